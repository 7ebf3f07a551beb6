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
    _print_rows(outcome)
    console.print(f"done in {time.perf_counter() - start:.1f}s; run directory: {outcome.run_dir}")


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="run directory of a stopped or crashed run")) -> None:
    """Continue a stopped run (evolution or search) from its last checkpoint, with the config it started with."""
    from evo_merge.progress import RichHooks
    from evo_merge.runner import load_stored_config, resume_run
    from evo_merge.store import RunStore

    start = time.perf_counter()
    with RunStore.open(run_dir) as probe:
        generations = load_stored_config(probe).evolution.generations
        checkpoint = probe.lineage.meta("checkpoint")
    where = f"generation {checkpoint['generation']}" if checkpoint else "the start"
    console.print(f"resuming {run_dir} from {where}")
    with RichHooks(console, generations) as hooks:
        outcome = resume_run(run_dir, hooks)
    _print_rows(outcome)
    console.print(f"done in {time.perf_counter() - start:.1f}s; run directory: {outcome.run_dir}")


@app.command()
def replay(run_dir: Path = typer.Argument(..., help="run directory"),
           ind_id: int = typer.Argument(..., metavar="ID", help="individual id"),
           device: Optional[str] = typer.Option(None, help="device to rebuild on (default: the run's eval.device)")
           ) -> None:
    """Rebuild an individual from its ancestors' weights and recorded recipe; check it equals the stored one."""
    from evo_merge.model_host import resolve_device
    from evo_merge.replay import replay as replay_individual
    from evo_merge.runner import load_stored_config
    from evo_merge.store import RunStore

    with RunStore.open(run_dir) as store:
        dev = resolve_device(device or load_stored_config(store).eval.device)
        res = replay_individual(store, ind_id, dev)
    extra = "" if res.velocity_equal is None else f", velocity {'equal' if res.velocity_equal else 'DIFFERS'}"
    console.print(f"individual {ind_id}: rebuilt on {dev} ({res.rebuilt_ancestors} collected ancestor(s) rebuilt "
                  f"too); weights {'equal' if res.weights_equal else 'DIFFER'}{extra}")
    if not res.weights_equal or res.velocity_equal is False:
        raise EvoMergeError(f"individual {ind_id} does not replay to its stored weights")


@app.command()
def gc(run_dir: Path = typer.Argument(..., help="run directory of a finished run"),
       dry_run: bool = typer.Option(False, "--dry-run", help="only report what would be deleted")) -> None:
    """Delete the weights of dead individuals; they stay replayable from the members."""
    from evo_merge.replay import collect_garbage
    from evo_merge.store import RunStore

    with RunStore.open(run_dir, lock=True) as store:
        rep = collect_garbage(store, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {rep.deleted_files} weight file(s), {rep.freed_bytes / 2**20:.1f} MiB; "
                  f"kept the weights of {rep.kept_individuals} living individual(s) and the members")


def _print_rows(outcome) -> None:
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


@app.command()
def search(config: Path = typer.Argument(..., help="run config YAML; its 'search' section sets the search"),
           out: Optional[Path] = typer.Option(None, help="override the run directory"),
           seed: Optional[int] = typer.Option(None, help="override seed"),
           optimizer: Optional[str] = typer.Option(None, help="override search.optimizer (NGOpt, CMA, PSO, ...)"),
           budget: Optional[int] = typer.Option(None, help="override search.budget"),
           num_workers: Optional[int] = typer.Option(None, help="override search.num_workers"),
           objective: Optional[str] = typer.Option(None, help="override search.objective (fitness or loss)"),
           granularity: Optional[str] = typer.Option(None, help="override search.granularity (parent, layers, filters)"),
           device: Optional[str] = typer.Option(None, help="override eval.device"),
           backend: Optional[str] = typer.Option(None, help="override pool.backend (local or ray)"),
           workers: Optional[int] = typer.Option(None, help="override pool.workers"),
           address: Optional[str] = typer.Option(None, help="join a Ray cluster (implies --backend ray)"),
           resume: bool = typer.Option(False, "--resume", help="continue the interrupted search in the run directory")
           ) -> None:
    """LoraHub-style: search the members' best composition for the task with Nevergrad."""
    from evo_merge.config import load_run_config
    from evo_merge.progress import RichHooks
    from evo_merge.runner import execute_search, prepare

    overrides = {k: v for k, v in {"seed": seed, "out": str(out) if out else None, "search.optimizer": optimizer,
                                   "search.budget": budget, "search.num_workers": num_workers,
                                   "search.objective": objective, "search.granularity": granularity,
                                   "eval.device": device, "pool.backend": "ray" if address else backend,
                                   "pool.workers": workers, "pool.address": address}.items() if v is not None}
    cfg = load_run_config(config, overrides)
    if not resume and cfg.out.exists() and any(cfg.out.iterdir()):
        raise EvoMergeError(f"run directory {cfg.out} already exists and is not empty; choose another --out "
                            "or pass --resume")
    start = time.perf_counter()
    with console.status("loading population, tasks and model"):
        prepared = prepare(cfg)
    sc = cfg.search
    console.print(f"search {sc.optimizer}, budget {sc.budget}, {sc.num_workers} at once, method {sc.method}, "
                  f"granularity {sc.granularity}, objective {sc.objective}, l1 {sc.l1}; population "
                  f"[bold]{prepared.population.spec.name}[/] ({len(prepared.members)} members)")
    with RichHooks(console, 1) as hooks:
        outcome = execute_search(cfg, hooks, prepared, resume=resume)
    _print_rows(outcome)
    _print_composition(outcome.run_dir, outcome.final_population[0])
    console.print(f"done in {time.perf_counter() - start:.1f}s; run directory: {outcome.run_dir}")


def _print_composition(run_dir: Path, ind_id: int) -> None:
    from evo_merge.store import RunStore

    store = RunStore.open(run_dir)
    try:
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
        extra = {k: v for k, v in ind.params.items() if k not in ("groups", "group_labels", "lora_mode")}
        if extra:
            console.print("merge parameters: " + ", ".join(f"{k}={v:.3g}" for k, v in extra.items()))
        for s in store.lineage.searches():
            png = Path(run_dir) / f"search-{s['id']}.png"
            console.print(f"best-so-far curve: {png}")
    finally:
        store.close()


@app.command()
def compare(config: Path = typer.Argument(..., help="compare config YAML (base run config, methods, seeds, targets)"),
            out: Optional[Path] = typer.Option(None, help="override the output directory"),
            seeds: Optional[str] = typer.Option(None, help="override seeds, e.g. 0,1,2"),
            methods: Optional[str] = typer.Option(None, help="override methods, comma-separated")) -> None:
    """Run baselines and evolution methods with several seeds; table of test-split mean and std, PNG chart."""
    from evo_merge.compare import Comparison, summarise, write_outputs
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
    cfg = load_compare_config(config, overrides)
    start = time.perf_counter()
    comparison = Comparison(cfg)
    with console.status("comparing") as status:
        comparison.progress = lambda msg: status.update(f"{msg} ({time.perf_counter() - start:.0f}s)")
        scores = comparison.scores()
        sweep = comparison.sweep() if cfg.sweep else []
    summary = summarise(scores)
    paths = write_outputs(summary, scores, cfg.out, "compare", f"held-out test score, mean ± std over seeds {cfg.seeds}")
    table = Table(title=f"held-out test split, mean ± std over seeds {cfg.seeds}")
    for col in ("target", "method", "test", "fitness set"):
        table.add_column(col, justify="right" if col in ("test", "fitness set") else "left")
    for r in summary:
        table.add_row(r["target"], r["method"], f"{r['test_mean']:.3f} ± {r['test_std']:.3f}", f"{r['fitness_mean']:.3f}")
    console.print(table)
    if sweep:
        sw = summarise(sweep)
        write_outputs(sw, sweep, cfg.out, "sweep", f"{cfg.sweep.method}: fitness-set size vs test score")
        for r in sw:
            console.print(f"sweep {r['method']}: test {r['test_mean']:.3f} ± {r['test_std']:.3f}, "
                          f"fitness set {r['fitness_mean']:.3f}")
    console.print(f"wrote {paths['csv']}, {paths['md']}, {paths['png']} in {time.perf_counter() - start:.0f}s")


@app.command()
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
def merge(config: Path = typer.Argument(..., help="merge config YAML (mergekit-style)"),
          out: Path = typer.Argument(..., help="output Hugging Face model directory")) -> None:
    """One-shot merge of given models into a Hugging Face model directory, like mergekit-yaml."""
    from evo_merge.oneshot import merge_from_config

    merge_from_config(config, out)
    console.print(f"wrote {out}")


def _register_commands() -> None:
    """Commands that live in their own modules."""
    from evo_merge import cli_export, cli_inspect  # noqa: F401 - cli_export registers `export`

    app.command()(cli_inspect.lineage)
    app.command()(cli_inspect.plot)


_register_commands()


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
