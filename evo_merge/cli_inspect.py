"""Inspecting a run: ``lineage`` (table, or a family tree as text, Mermaid, DOT or PNG) and ``plot``.

The functions are plain; ``evo_merge.cli`` registers them with ``app.command()(...)``. This module
imports ``evo_merge.cli`` only inside functions, so ``cli.py`` may import it at any point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from evo_merge.errors import EvoMergeError

LINEAGE_FORMATS = ("table", "text", "mermaid", "dot", "png")


def lineage(run_dir: Path = typer.Argument(..., help="run directory"),
            ind_id: Optional[int] = typer.Argument(None, metavar="[ID]", help="individual id; all if omitted"),
            format: str = typer.Option("table", "--format", help="table|text|mermaid|dot|png"),
            out: Optional[Path] = typer.Option(None, "--out", help="file for png (default RUN_DIR/lineage-ID.png); "
                                                                   "text formats print to stdout unless --out")
            ) -> None:
    """Every individual, or the family tree of one: a table, an indented tree, Mermaid, DOT or a PNG."""
    from evo_merge.report import lineage_graph
    from evo_merge.store import RunStore
    from evo_merge.weights_io import atomic_write_text

    fmt = format.lower()
    if fmt not in LINEAGE_FORMATS:
        raise EvoMergeError(f"unknown --format {format!r}; choose one of {', '.join(LINEAGE_FORMATS)}")
    if fmt != "table" and ind_id is None:
        raise EvoMergeError(f"--format {fmt} draws one individual's family tree: give an ID "
                            f"(evo-merge lineage {run_dir} ID --format {fmt})")
    if fmt == "table" and out is not None:
        raise EvoMergeError("--out needs --format text, mermaid, dot or png")
    store = RunStore.open(run_dir)
    try:
        if ind_id is not None and store.lineage.get(ind_id) is None:
            raise EvoMergeError(f"no individual {ind_id} in {run_dir}")
        if fmt == "table":
            _lineage_table(store, ind_id)
            return
        tree = lineage_graph.family_tree(store.lineage, ind_id)
        if fmt == "png":
            path = lineage_graph.to_png(tree, out or Path(run_dir) / f"lineage-{ind_id}.png",
                                        title=f"{Path(run_dir).name}: family tree of #{ind_id}")
            typer.echo(f"wrote {path}")
            return
        text = {"text": lineage_graph.to_text, "mermaid": lineage_graph.to_mermaid,
                "dot": lineage_graph.to_dot}[fmt](tree)
        if out is None:
            typer.echo(text, nl=False)
        else:
            atomic_write_text(out, text)
            typer.echo(f"wrote {out}")
    finally:
        store.close()


def _lineage_table(store, ind_id: Optional[int]) -> None:
    """The rich table of every individual, or of one and its ancestors."""
    from evo_merge.cli import console

    rows = store.lineage.all() if ind_id is None else store.lineage.ancestors(ind_id)
    table = Table(title=f"lineage of {ind_id}" if ind_id is not None else "individuals")
    for col in ("id", "gen", "operator", "parents", "method", "coefficients", "seed", "fitness", "test"):
        table.add_column(col)
    for r in rows:
        coeffs = ", ".join(f"{c:.3f}" for c in r.coefficients) if r.coefficients else ""
        table.add_row(str(r.id), str(r.generation), r.name or r.operator, ",".join(map(str, r.parents)),
                      r.method or "", coeffs, "" if r.seed is None else str(r.seed),
                      "" if r.fitness is None else f"{r.fitness:.4f}",
                      "" if r.test_score is None else f"{r.test_score:.4f}")
    console.print(table)


def plot(run_dir: Path = typer.Argument(..., help="run directory"),
         out: Optional[Path] = typer.Option(None, "--out", help="PNG to write (default RUN_DIR/fitness.png)")) -> None:
    """Best, mean and mean +/- std fitness per generation as a PNG."""
    from evo_merge.report.fitness_plot import plot_fitness
    from evo_merge.store import RunStore

    store = RunStore.open(run_dir)
    try:
        path = plot_fitness(store.lineage, out or Path(run_dir) / "fitness.png",
                            title=f"{Path(run_dir).name}: fitness per generation")
    finally:
        store.close()
    typer.echo(f"wrote {path}")
