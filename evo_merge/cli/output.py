"""What the commands print: the consoles, the results table and a searched composition."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_rows(outcome) -> None:
    """The held-out test table of a finished run."""
    table = Table(title=f"Held-out test split ({outcome.run_dir})")
    table.add_column("model")
    table.add_column("fitness set", justify="right")
    table.add_column("test", justify="right")
    heldout = any("heldout" in row for row in outcome.rows)
    if heldout:
        table.add_column("held-out tasks", justify="right")
    for row in outcome.rows:
        cells = [row["name"], f"{row['fitness']:.4f}", f"{row['test']:.4f}"]
        table.add_row(*cells, *([f"{row['heldout']:.4f}"] if heldout else []))
    console.print(table)


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
