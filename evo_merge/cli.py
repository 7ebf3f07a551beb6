"""The ``evo-merge`` command line. User errors print one line and exit with code 2."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from evo_merge.errors import EvoMergeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evolve populations of LLMs by weight merging, mutation, selection and succession.")
console = Console()
err_console = Console(stderr=True)


@app.command()
def run(config: Path = typer.Argument(..., help="run config YAML"),
        generations: Optional[int] = typer.Option(None, help="override evolution.generations"),
        seed: Optional[int] = typer.Option(None, help="override seed"),
        out: Optional[Path] = typer.Option(None, help="override the run directory"),
        population_size: Optional[int] = typer.Option(None, help="override evolution.population_size"),
        device: Optional[str] = typer.Option(None, help="override eval.device (auto, cpu, cuda, cuda:1)"),
        backend: Optional[str] = typer.Option(None, help="override pool.backend (local or ray)"),
        workers: Optional[int] = typer.Option(None, help="override pool.workers"),
        mode: Optional[str] = typer.Option(None, help="override pool.mode (generational or async)"),
        address: Optional[str] = typer.Option(None, help="join a Ray cluster: 'auto' or ray://host:port "
                                                           "(implies --backend ray)")) -> None:
    """Evolve a population and print the test-split table."""
    from evo_merge.config import load_run_config
    from evo_merge.progress import RichHooks
    from evo_merge.runner import execute, prepare

    overrides = {k: v for k, v in {"evolution.generations": generations, "seed": seed,
                                   "out": str(out) if out else None, "evolution.population_size": population_size,
                                   "eval.device": device, "pool.backend": "ray" if address else backend,
                                   "pool.workers": workers, "pool.mode": mode, "pool.address": address}.items()
                 if v is not None}
    cfg = load_run_config(config, overrides)
    if cfg.out.exists() and any(cfg.out.iterdir()):
        raise EvoMergeError(f"run directory {cfg.out} already exists and is not empty; choose another --out")
    start = time.perf_counter()
    with console.status("loading population, tasks and model (the demo population is built on first use)"):
        prepared = prepare(cfg)
    console.print(f"population [bold]{prepared.population.spec.name}[/] ({len(prepared.members)} members, "
                  f"{prepared.population.spec.kind}), tasks: {', '.join(t.name for t, _ in prepared.tasks)}, "
                  f"{cfg.pool.backend} pool of {cfg.pool.workers} worker(s), {cfg.pool.mode}; "
                  f"loaded in {time.perf_counter() - start:.1f}s")
    with RichHooks(console, cfg.evolution.generations) as hooks:
        outcome = execute(cfg, hooks, prepared)
    table = Table(title=f"Held-out test split ({outcome.run_dir})")
    table.add_column("model")
    table.add_column("fitness set", justify="right")
    table.add_column("test", justify="right")
    for row in outcome.rows:
        table.add_row(row["name"], f"{row['fitness']:.4f}", f"{row['test']:.4f}")
    console.print(table)
    console.print(f"done in {time.perf_counter() - start:.1f}s; run directory: {outcome.run_dir}")


@app.command()
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


@app.command()
def lineage(run_dir: Path = typer.Argument(..., help="run directory"),
            ind_id: Optional[int] = typer.Argument(None, metavar="[ID]", help="individual id; all if omitted")) -> None:
    """Every individual, or the family tree of one."""
    from evo_merge.store import RunStore

    store = RunStore.open(run_dir)
    try:
        if ind_id is None:
            rows = store.lineage.all()
        else:
            if store.lineage.get(ind_id) is None:
                raise EvoMergeError(f"no individual {ind_id} in {run_dir}")
            rows = store.lineage.ancestors(ind_id)
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
    finally:
        store.close()


@app.command()
def merge(config: Path = typer.Argument(..., help="merge config YAML (mergekit-style)"),
          out: Path = typer.Argument(..., help="output Hugging Face model directory")) -> None:
    """One-shot merge of given models into a Hugging Face model directory, like mergekit-yaml."""
    from evo_merge.oneshot import merge_from_config

    merge_from_config(config, out)
    console.print(f"wrote {out}")


def main() -> None:
    """Entry point: one line and exit 2 on user errors; a traceback only with EVO_MERGE_DEBUG=1."""
    debug = os.environ.get("EVO_MERGE_DEBUG") == "1"
    try:
        app()  # click's standalone mode: usage errors print their message and exit 2
    except EvoMergeError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: never a traceback for users
        if debug:
            raise
        err_console.print(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                          f"(set EVO_MERGE_DEBUG=1 for the traceback)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
