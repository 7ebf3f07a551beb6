"""Commands that read a run: ``status``, ``lineage`` (a table, or a family tree as text,
Mermaid, DOT or PNG; the member composition of one individual; JSON or CSV records),
``plot`` and ``candidates`` (``cli/searches.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from evo_merge.cli.formats import check_format, emit
from evo_merge.cli.output import composition_of, composition_table, console, results_table
from evo_merge.cli.searches import candidates, plot  # noqa: F401 - commands registered from here
from evo_merge.errors import EvoMergeError

LINEAGE_FORMATS = ("table", "text", "mermaid", "dot", "png", "json", "csv")
TABLE_FORMATS = ("table", "json", "csv")


def lineage(run_dir: Path = typer.Argument(..., help="run directory"),
            ind_id: Optional[int] = typer.Argument(None, metavar="[ID]", help="individual id; all if omitted"),
            format: str = typer.Option("table", "--format", help="table|text|mermaid|dot|png|json|csv"),
            out: Optional[Path] = typer.Option(None, "--out", help="file for png (default RUN_DIR/lineage-ID.png); "
                                                                   "text formats print to stdout unless --out"),
            composition: bool = typer.Option(False, "--composition", help="the individual as weights of the "
                                             "members, per layer group (linear histories; says when undefined)"),
            depth: Optional[int] = typer.Option(None, "--depth", min=1, help="png: parent steps above ID to draw "
                                                "(default: as many as fit 40 boxes)")
            ) -> None:
    """Every individual, or the family tree of one: a table, an indented tree, Mermaid, DOT, a PNG,
    JSON or CSV records; with --composition, its weights of the members."""
    from evo_merge.report import tree as lineage_tree, tree_png, tree_text
    from evo_merge.store import RunStore
    from evo_merge.weights_io import atomic_write_text

    fmt = check_format(format, LINEAGE_FORMATS)
    needs_id = fmt not in ("table", "json", "csv") or composition
    if needs_id and ind_id is None:
        what = "--composition shows" if composition else f"--format {fmt} draws"
        raise EvoMergeError(f"{what} one individual: give an ID (evo-merge lineage {run_dir} ID "
                            f"{'--composition' if composition else '--format ' + fmt})")
    if composition and fmt not in TABLE_FORMATS:
        raise EvoMergeError(f"--composition prints a table, JSON or CSV, not --format {fmt}")
    if fmt in TABLE_FORMATS and out is not None:
        raise EvoMergeError("--out needs --format text, mermaid, dot or png")
    store = RunStore.open(run_dir)
    try:
        if ind_id is not None and store.lineage.get(ind_id) is None:
            raise EvoMergeError(f"no individual {ind_id} in {run_dir}")
        if composition:
            _composition(run_dir, ind_id, fmt)
            return
        if fmt in TABLE_FORMATS:
            rows = store.lineage.all() if ind_id is None else store.lineage.ancestors(ind_id)
            if fmt == "table":
                _lineage_table(rows, ind_id)
            else:
                emit([lineage_record(r) for r in rows], fmt)
            return
        tree = lineage_tree.family_tree(store.lineage, ind_id)
        if fmt == "png":
            path = tree_png.to_png(tree, out or Path(run_dir) / f"lineage-{ind_id}.png",
                                   title=f"{Path(run_dir).name}: family tree of #{ind_id}", depth=depth)
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


def _composition(run_dir: Path, ind_id: int, fmt: str) -> None:
    if fmt == "table":
        console.print(composition_table(run_dir, ind_id))
        return
    comp = composition_of(run_dir, ind_id)
    records = comp.records() or [{"id": ind_id, "group": None, "member_id": None, "member": None,
                                  "weight": None, "level": comp.level}]
    for r in records:
        r["note"] = comp.summary()
    emit(records, fmt)


def lineage_record(r) -> dict:
    """One individual as a flat record."""
    return {"id": r.id, "generation": r.generation, "operator": r.operator, "name": r.name, "parents": r.parents,
            "method": r.method, "coefficients": r.coefficients, "params": r.params, "seed": r.seed,
            "fitness": r.fitness, "test": r.test_score, "partial": bool(r.partial)}


def _lineage_table(rows, ind_id: Optional[int]) -> None:
    """The rich table of every individual, or of one and its ancestors."""
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


def status(run_dir: Path = typer.Argument(..., help="run directory"),
           format: str = typer.Option("table", "--format", help="table|json|csv: json and csv give one record "
                                      "per generation (row=generation) and per final result (row=result)")
           ) -> None:
    """Per-generation fitness and the final table of a run."""
    from evo_merge.report.effects import mutation_effect
    from evo_merge.report.results import result_records, run_metric_text
    from evo_merge.store import RunStore, weight_store_line

    fmt = check_format(format, TABLE_FORMATS)
    store = RunStore.open(run_dir)
    try:
        gens = store.lineage.generations()
        records = result_records(store.lineage.results(), store.lineage)
        if fmt != "table":
            rows = [{"row": "generation", **{k: g[k] for k in ("generation", "best", "mean", "std", "offspring",
                                                                "seconds")},
                     "stall": "; ".join(e["stall"].get("reason", "") for e in g["events"] if "stall" in e) or None}
                    for g in gens]
            emit(rows + [{"row": "result", **r} for r in records], fmt)
            return
        table = Table(title=f"{run_dir}: {len(store.lineage.all())} individuals, "
                            f"status {store.lineage.meta('status', 'running or stopped')}")
        for col in ("generation", "best", "mean", "std", "offspring", "seconds"):
            table.add_column(col, justify="right")
        for g in gens:
            table.add_row(str(g["generation"]), f"{g['best']:.4f}", f"{g['mean']:.4f}", f"{g['std']:.4f}",
                          str(g["offspring"]), f"{g['seconds']:.1f}")
        console.print(table)
        console.print(mutation_effect(store.lineage.all()).text())
        console.print(weight_store_line(store))
        for g in gens:
            for event in g["events"]:
                console.print(f"generation {g['generation']}: stall ({event['stall']['reason']}): "
                              f"{', '.join(event['actions'])}")
        if records:
            console.print(results_table(records, run_dir, run_metric_text(store)))
    finally:
        store.close()
