"""``evo-merge compare``: every method with several seeds; the table, CSV, Markdown and PNG."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from evo_merge.cli.formats import check_format, emit
from evo_merge.cli.output import console, err_console
from evo_merge.errors import EvoMergeError


def compare(config: Path = typer.Argument(..., help="compare config YAML (base run config, methods, seeds, targets)"),
            out: Optional[Path] = typer.Option(None, help="override the output directory"),
            seeds: Optional[str] = typer.Option(None, help="override seeds, e.g. 0,1,2"),
            methods: Optional[str] = typer.Option(None, help="override methods, comma-separated"),
            format: str = typer.Option("table", "--format", help="table|json|csv: the summary as one record per "
                                       "(target, method) on stdout; progress goes to stderr")) -> None:
    """Run baselines and evolution methods with several seeds; table of test-split mean and std, PNG chart."""
    from evo_merge.compare import run_comparison
    from evo_merge.config import load_compare_config

    overrides: dict = {}
    if out:
        overrides["out"] = str(out)
    if seeds:
        try:
            overrides["seeds"] = [int(x) for x in seeds.split(",")]
        except ValueError:
            raise EvoMergeError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if methods:
        overrides["methods"] = [m.strip() for m in methods.split(",")]
    fmt = check_format(format, ("table", "json", "csv"))
    cfg = load_compare_config(config, overrides)
    start = time.perf_counter()
    shown = console if fmt == "table" else err_console  # records alone on stdout
    with shown.status("comparing") as status:
        result = run_comparison(cfg, progress=lambda msg: status.update(f"{msg} ({_elapsed(start)})"))
    if fmt != "table":
        emit(result.summary + [{**s, "sweep": True} for s in result.sweep_summary], fmt)
        return
    table = Table(title=f"held-out test split, mean ± std over seeds {cfg.seeds}")
    for col in ("target", "method", "test", "fitness set"):
        table.add_column(col, justify="right" if col in ("test", "fitness set") else "left")
    for r in result.summary:
        table.add_row(r["target"], r["method"], f"{r['test_mean']:.3f} ± {r['test_std']:.3f}", f"{r['fitness_mean']:.3f}")
    console.print(table)
    for r in result.sweep_summary:
        console.print(f"sweep {r['method']}: test {r['test_mean']:.3f} ± {r['test_std']:.3f}, "
                      f"fitness set {r['fitness_mean']:.3f}")
    paths = result.paths
    console.print(f"wrote {paths['csv']}, {paths['md']}, {paths['png']} in {time.perf_counter() - start:.0f}s")


def _elapsed(start: float) -> str:
    s = int(time.perf_counter() - start)
    return f"{s // 60}m{s % 60:02d}s elapsed" if s >= 60 else f"{s}s elapsed"

