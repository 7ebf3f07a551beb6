"""Commands that read a run's curves and searches: ``plot`` (fitness per generation, or a
search run's best-so-far curve) and ``candidates`` (every candidate a search evaluated)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from evo_merge.cli.formats import check_format, emit
from evo_merge.cli.output import console
from evo_merge.errors import EvoMergeError


def plot(run_dir: Path = typer.Argument(..., help="run directory"),
         out: Optional[Path] = typer.Option(None, "--out", help="PNG to write (default RUN_DIR/fitness.png; "
                                                                "for a search run RUN_DIR/search.png)")) -> None:
    """Best, mean and mean +/- std fitness per generation as a PNG; for a search run, the search's
    best-so-far curve."""
    from evo_merge.report.fitness_plot import plot_fitness
    from evo_merge.store import RunStore

    store = RunStore.open(run_dir)
    try:
        searches = store.lineage.searches()
        if store.lineage.meta("kind") == "search" and searches:
            path = _plot_search(store, searches[-1], out or Path(run_dir) / "search.png", Path(run_dir).name)
        else:
            path = plot_fitness(store.lineage, out or Path(run_dir) / "fitness.png",
                                title=f"{Path(run_dir).name}: fitness per generation")
    finally:
        store.close()
    typer.echo(f"wrote {path}")


def _plot_search(store, search: dict, path: Path, name: str) -> Path:
    from evo_merge.search.plot import plot_search

    rows = [r for r in store.lineage.search_candidates(search["id"]) if r["told"] is not None]
    if not rows:
        raise EvoMergeError(f"search {search['id']} in {store.root} has no evaluated candidate yet")
    refs = {f"{r['name']} (fitness set)": r["fitness"] for r in store.lineage.results()
            if r["name"] in ("best initial member", "uniform merge") and r.get("fitness") is not None}
    st = search["settings"]
    return plot_search(rows, path, f"{name}: search {search['id']} ({st.get('optimizer')}, "
                                   f"{len(search['parents'])} parents, budget {st.get('budget')})", refs)


def candidates(run_dir: Path = typer.Argument(..., help="run directory"),
               search_id: Optional[int] = typer.Option(None, "--search", help="search id (default: the last)"),
               top: int = typer.Option(0, help="show only the N best (0: all, in tell order)"),
               format: str = typer.Option("table", "--format", help="table|json|csv (one record per candidate)")
               ) -> None:
    """Every candidate a coefficient search evaluated: coefficients, parameters, objective, fitness
    (and the fitness rows it rests on where racing stopped it)."""
    from evo_merge.store import RunStore

    fmt = check_format(format, ("table", "json", "csv"))
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
        if fmt != "table":
            emit([{"search": chosen["id"], "idx": r["idx"], "told": r["told"], "objective": r["objective"],
                   "fitness": r["fitness"], "fitness_rows": r["rows"], "loss": r.get("loss"),
                   "coefficients": r["value"]["coefficients"],
                   **{f"param_{k}": v for k, v in r["value"]["params"].items()}, "worker": r.get("worker")}
                  for r in rows], fmt)
            return
        st = chosen["settings"]
        table = Table(title=f"search {chosen['id']} ({st['optimizer']}, budget {st['budget']}, {chosen['status']}): "
                            f"parents {chosen['parents']}")
        for col in ("#", "told", "objective", "fitness", "coefficients", "params"):
            table.add_column(col)
        for r in rows:
            v = r["value"]
            rows_note = "" if r["rows"] is None else f" ({r['rows']} rows)"  # racing stopped it there
            table.add_row(str(r["idx"]), str(r["told"]), f"{r['objective']:.4f}", f"{r['fitness']:.4f}{rows_note}",
                          " ".join(f"{c:+.2f}" for c in v["coefficients"]),
                          ", ".join(f"{k}={x:.3g}" for k, x in v["params"].items()))
        console.print(table)
    finally:
        store.close()
