"""What the commands print: the consoles, the results table, compositions and a searched composition.

When stdout is not a terminal (a log file, CI), ``console.status`` prints plain lines (what
started, and when it ended) instead of drawing a spinner nobody sees.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.table import Table


class _PlainStatus:
    """``console.status`` off a terminal: a line when it starts, changes and ends."""

    def __init__(self, console: Console, message: str):
        self.console, self.message, self.start = console, message, time.perf_counter()
        self.console.print(f"{message} ...", markup=False, highlight=False, soft_wrap=True)

    def update(self, status: str = "", **_) -> None:
        if status and status != self.message:
            self.message = status
            self.console.print(f"{status} ...", markup=False, highlight=False, soft_wrap=True)


class EvoConsole(Console):
    @contextmanager
    def status(self, status, **kwargs) -> Iterator:  # type: ignore[override]
        if self.is_terminal:
            with super().status(status, **kwargs) as live:
                yield live
            return
        plain = _PlainStatus(self, str(status))
        yield plain
        self.print(f"{plain.message}: done in {time.perf_counter() - plain.start:.1f}s", markup=False,
                   highlight=False, soft_wrap=True)


console = EvoConsole()
err_console = EvoConsole(stderr=True)


def results_table(records: list[dict], run_dir: Path | str, metric: str) -> Table:
    """The final table: what each row is, the metric, what the ensemble is, what to run next."""
    from evo_merge.report.results import ensemble_note, next_steps

    table = Table(title=f"Held-out test split ({run_dir})\nscore: {metric}", title_justify="left",
                  caption_justify="left")
    table.add_column("model")
    table.add_column("individual")
    table.add_column("fitness set", justify="right")
    table.add_column("test", justify="right")
    heldout = any("heldout" in rec for rec in records)
    if heldout:
        table.add_column("held-out tasks", justify="right")
    for rec in records:
        cells = [rec["name"], rec["individual"], _num(rec["fitness"]), _num(rec["test"])]
        table.add_row(*cells, *([_num(rec.get("heldout"))] if heldout else []))
    lines = [note] if (note := ensemble_note(records)) else []
    best = next((rec["ids"][0] for rec in records if rec["kind"] == "model" and rec["ids"]
                 and rec["name"] in ("evolved best", "searched composition")), None)
    lines += ["next:"] + [f"  {cmd}" for cmd, _ in next_steps(run_dir, best)]
    table.caption = "\n".join(lines)
    return table


def _num(x) -> str:
    return "" if x is None else f"{x:.4f}"


def print_rows(outcome) -> None:
    """The held-out test table of a finished run; after an evolution run, the evolved best's composition."""
    from evo_merge.report.results import result_records, run_metric_text
    from evo_merge.store import RunStore

    with RunStore.open(outcome.run_dir) as store:
        records = result_records(outcome.rows, store.lineage)
        metric = run_metric_text(store)
    console.print(results_table(records, outcome.run_dir, metric))
    best = next((rec for rec in records if rec["name"] == "evolved best"), None)
    if best and best["ids"]:
        print_member_composition(outcome.run_dir, best["ids"][0], "evolved best")


def print_member_composition(run_dir: Path | str, ind_id: int, what: str = "") -> None:
    """An individual as weights of the members, per layer group where they differ."""
    console.print(composition_table(run_dir, ind_id, what))


def composition_of(run_dir: Path | str, ind_id: int):
    from evo_merge.report.composition import compose, store_tensor_names
    from evo_merge.store import RunStore

    with RunStore.open(run_dir) as store:
        names, kind = store_tensor_names(store)
        return compose(store.lineage.all(), ind_id, names, kind)


def composition_table(run_dir: Path | str, ind_id: int, what: str = ""):
    """A rich Table of the member weights (or, when undefined, one line saying why)."""
    comp = composition_of(run_dir, ind_id)
    head = f"composition of #{ind_id}" + (f" ({what})" if what else "") + " in the members' task vectors"
    if not comp.defined:
        from rich.text import Text

        return Text(f"{head}: {comp.summary()}")
    used = [i for i, _ in enumerate(comp.members) if any(abs(ws[i]) > 1e-12 for _, ws in comp.rows)]
    table = Table(title=head, title_justify="left", caption=comp.summary(), caption_justify="left")
    names = [comp.names.get(comp.members[i], str(comp.members[i])) for i in used]
    if len(used) > len(comp.rows):  # one row per member, so that many members fit a terminal's width
        table.add_column("member")
        for label, _ in comp.rows:
            table.add_column(label, justify="right")
        for name, i in zip(names, used):
            table.add_row(name, *(f"{ws[i]:+.3f}" for _, ws in comp.rows))
        table.add_row("sum", *(f"{sum(ws):.3f}" for _, ws in comp.rows))
        return table
    table.add_column("layers")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("sum", justify="right")
    for label, ws in comp.rows:
        table.add_row(label, *(f"{ws[i]:+.3f}" for i in used), f"{sum(ws):.3f}")
    return table


def print_effects(run_dir: Path) -> None:
    """How many mutants changed their parent's fitness."""
    from evo_merge.report.effects import mutation_effect
    from evo_merge.store import RunStore

    with RunStore.open(run_dir) as store:
        console.print(mutation_effect(store.lineage.all()).text())


def print_composition(run_dir: Path, ind_id: int) -> None:
    """A searched composition's coefficients per group and parent, and its search curves."""
    from evo_merge.store import RunStore

    with RunStore.open(run_dir) as store:
        ind = store.lineage.get(ind_id)
        names = {i.id: i.name or str(i.id) for i in store.lineage.all()}
        labels = ind.params.get("group_labels", ["all"])
        k = len(ind.parents)
        table = Table(title=f"searched composition: individual {ind_id} ({ind.method})")
        table.add_column("group")
        for p in ind.parents:
            table.add_column(names[p], justify="right")
        for g, label in enumerate(labels):
            table.add_row(label, *(f"{c:+.3f}" for c in ind.coefficients[g * k:(g + 1) * k]))
        console.print(table)
        extra = {k: v for k, v in ind.params.items() if k not in ("groups", "group_labels", "lora_mode", "origin")}
        if extra:
            console.print("merge parameters: " + ", ".join(f"{k}={v:.3g}" for k, v in extra.items()))
        for s in store.lineage.searches():
            png = Path(run_dir) / f"search-{s['id']}.png"
            console.print(f"best-so-far curve: {png}")
