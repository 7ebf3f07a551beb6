"""Commands that read a run: ``status``, ``lineage`` (a table, or a family tree as text,
Mermaid, DOT or PNG), ``plot`` and ``candidates``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from evo_merge.cli.output import console
from evo_merge.errors import EvoMergeError

LINEAGE_FORMATS = ("table", "text", "mermaid", "dot", "png")


def lineage(run_dir: Path = typer.Argument(..., help="run directory"),
            ind_id: Optional[int] = typer.Argument(None, metavar="[ID]", help="individual id; all if omitted"),
            format: str = typer.Option("table", "--format", help="table|text|mermaid|dot|png"),
            out: Optional[Path] = typer.Option(None, "--out", help="file for png (default RUN_DIR/lineage-ID.png); "
                                                                   "text formats print to stdout unless --out")
            ) -> None:
    """Every individual, or the family tree of one: a table, an indented tree, Mermaid, DOT or a PNG."""
    from evo_merge.report import tree as lineage_tree, tree_png, tree_text
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
        tree = lineage_tree.family_tree(store.lineage, ind_id)
        if fmt == "png":
            path = tree_png.to_png(tree, out or Path(run_dir) / f"lineage-{ind_id}.png",
                                        title=f"{Path(run_dir).name}: family tree of #{ind_id}")
            typer.echo(f"wrote {path}")
            return
        text = {"text": tree_text.to_text, "mermaid": tree_text.to_mermaid,
                "dot": tree_text.to_dot}[fmt](tree)
        if out is None:
            typer.echo(text, nl=False)
        else:
            atomic_write_text(out, text)
            typer.echo(f"wrote {out}")
    finally:
        store.close()


def _lineage_table(store, ind_id: Optional[int]) -> None:
    """The rich table of every individual, or of one and its ancestors."""
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


def status(run_dir: Path = typer.Argument(..., help="run directory")) -> None:
    """Per-generation fitness and the final table of a run."""
    from evo_merge.store import RunStore

    store = RunStore.open(run_dir)
    try:
        table = Table(title=f"{run_dir}: {len(store.lineage.all())} individuals, "
                            f"status {store.lineage.meta('status', 'running or stopped')}")
        for col in ("generation", "best", "mean", "std", "offspring", "seconds"):
            table.add_column(col, justify="right")
        for g in store.lineage.generations():
            table.add_row(str(g["generation"]), f"{g['best']:.4f}", f"{g['mean']:.4f}", f"{g['std']:.4f}",
                          str(g["offspring"]), f"{g['seconds']:.1f}")
        console.print(table)
        from evo_merge.report.effects import mutation_effect

        console.print(mutation_effect(store.lineage.all()).text())
        for g in store.lineage.generations():
            for event in g["events"]:
                console.print(f"generation {g['generation']}: stall ({event['stall']['reason']}): "
                              f"{', '.join(event['actions'])}")
        results = store.lineage.results()
        if results:
            res = Table(title="results")
            for col in ("model", "fitness set", "test"):
                res.add_column(col)
            for r in results:
                res.add_row(r["name"], f"{r['fitness']:.4f}", f"{r['test_score']:.4f}")
            console.print(res)
    finally:
        store.close()


def candidates(run_dir: Path = typer.Argument(..., help="run directory"),
               search_id: Optional[int] = typer.Option(None, "--search", help="search id (default: the last)"),
               top: int = typer.Option(0, help="show only the N best (0: all, in tell order)")) -> None:
    """Every candidate a coefficient search evaluated: coefficients, parameters, objective, fitness."""
    from evo_merge.store import RunStore

    store = RunStore.open(run_dir)
    try:
        searches = store.lineage.searches()
        if not searches:
            raise EvoMergeError(f"no coefficient search in {run_dir}")
        chosen = searches[-1] if search_id is None else next((s for s in searches if s["id"] == search_id), None)
        if chosen is None:
            raise EvoMergeError(f"no search {search_id} in {run_dir} (searches: {[s['id'] for s in searches]})")
        rows = [r for r in store.lineage.search_candidates(chosen["id"]) if r["told"] is not None]
        rows.sort(key=(lambda r: (r["objective"], r["idx"])) if top else (lambda r: r["told"]))
        rows = rows[:top] if top else rows
        st = chosen["settings"]
        table = Table(title=f"search {chosen['id']} ({st['optimizer']}, budget {st['budget']}, {chosen['status']}): "
                            f"parents {chosen['parents']}")
        for col in ("#", "told", "objective", "fitness", "coefficients", "params"):
            table.add_column(col)
        for r in rows:
            v = r["value"]
            table.add_row(str(r["idx"]), str(r["told"]), f"{r['objective']:.4f}", f"{r['fitness']:.4f}",
                          " ".join(f"{c:+.2f}" for c in v["coefficients"]),
                          ", ".join(f"{k}={x:.3g}" for k, x in v["params"].items()))
        console.print(table)
    finally:
        store.close()
