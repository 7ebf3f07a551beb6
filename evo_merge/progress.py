"""Rich progress bars and per-generation lines for the engine's hooks."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evo_merge.engine import EngineHooks, GenerationReport


class RichHooks(EngineHooks):
    def __init__(self, console: Console, generations: int):
        self.console = console
        self.generations = generations
        self.progress = Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.task = None

    def __enter__(self) -> "RichHooks":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def phase(self, name: str, total: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total)

    def advance(self) -> None:
        self.progress.advance(self.task)

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    def event(self, generation: int, event: dict) -> None:
        stall = event.get("stall", {})
        done = ", ".join(f"{a} ({len(event[a])})" if isinstance(event.get(a), list) else a for a in event["actions"])
        self.console.print(f"        stall: {stall.get('reason', '')}; {done}", highlight=False)

    def generation(self, r: GenerationReport) -> None:
        self.console.print(f"gen {r.generation:>3}/{self.generations}  best {r.best:.4f}  mean {r.mean:.4f}  "
                           f"std {r.std:.4f}  offspring {r.offspring:>3}  {r.seconds:6.1f}s")
