"""Rich progress bars and per-generation lines for the engine's hooks.

On a terminal each phase is a bar (a spinner when its size is unknown, like Ray starting).
When the output is not a terminal (a log file, CI) bars are never drawn, so each phase
prints a plain line when it starts and one when it ends, with its duration.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

from evo_merge.engine import EngineHooks, GenerationReport


class RichHooks(EngineHooks):
    def __init__(self, console: Console, generations: int, plain: bool | None = None):
        self.console = console
        self.generations = generations
        self.plain = (not console.is_terminal) if plain is None else plain
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<16}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
        self.task = None
        self._phase: tuple[str, float, int | None] | None = None  # name, start, total (plain output)
        self._done = 0

    def __enter__(self) -> "RichHooks":
        if not self.plain:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self._end_phase()
        self._phase = None  # a phase cut short by an error or Ctrl-C is not "done"
        if not self.plain:
            self.progress.stop()

    def phase(self, name: str, total: int | None) -> None:
        """A new phase; ``total`` None: its size is unknown (a spinner, e.g. while Ray starts)."""
        if self.plain:
            self._end_phase()
            self._phase, self._done = (name, time.perf_counter(), total), 0
            size = f" ({total} steps)" if total else ""
            self.console.print(f"{name}{size} ...", markup=False, highlight=False, soft_wrap=True)
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total)

    def _end_phase(self) -> None:
        if self.plain and self._phase is not None:
            name, start, total = self._phase
            steps = f", {self._done}/{total}" if total else ""
            self.console.print(f"{name}: done in {time.perf_counter() - start:.1f}s{steps}", markup=False,
                               highlight=False, soft_wrap=True)
            self._phase = None

    def advance(self) -> None:
        if self.plain:
            self._done += 1
            return
        if self.task is not None:
            self.progress.advance(self.task)

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    def event(self, generation: int, event: dict) -> None:
        stall = event.get("stall", {})
        done = ", ".join(f"{a} ({len(event[a])})" if isinstance(event.get(a), list) else a for a in event["actions"])
        self.console.print(f"        stall: {stall.get('reason', '')}; {done}", highlight=False)

    def generation(self, r: GenerationReport) -> None:
        self._end_phase()
        self.console.print(f"gen {r.generation:>3}/{self.generations}  best {r.best:.4f}  mean {r.mean:.4f}  "
                           f"std {r.std:.4f}  offspring {r.offspring:>3}  {r.seconds:6.1f}s")
