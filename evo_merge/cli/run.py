"""Commands that run or continue evolution and searches: ``run``, ``resume``, ``search``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from evo_merge.cli.output import console, print_composition, print_effects, print_rows
from evo_merge.errors import EvoMergeError


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

    overrides, flags = _overrides({"--generations": ("evolution.generations", generations), "--seed": ("seed", seed),
                                   "--out": ("out", str(out) if out else None),
                                   "--population-size": ("evolution.population_size", population_size),
                                   "--device": ("eval.device", device),
                                   "--backend": ("pool.backend", "ray" if address else backend),
                                   "--workers": ("pool.workers", workers), "--mode": ("pool.mode", mode),
                                   "--address": ("pool.address", address)})
    cfg = load_run_config(config, overrides, flags)
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
    print_effects(outcome.run_dir)
    print_rows(outcome)
    console.print(f"done in {time.perf_counter() - start:.1f}s; run directory: {outcome.run_dir}")


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
    print_rows(outcome)
    console.print(f"done in {time.perf_counter() - start:.1f}s; run directory: {outcome.run_dir}")


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

    overrides, flags = _overrides({"--seed": ("seed", seed), "--out": ("out", str(out) if out else None),
                                   "--optimizer": ("search.optimizer", optimizer), "--budget": ("search.budget", budget),
                                   "--num-workers": ("search.num_workers", num_workers),
                                   "--objective": ("search.objective", objective),
                                   "--granularity": ("search.granularity", granularity),
                                   "--device": ("eval.device", device),
                                   "--backend": ("pool.backend", "ray" if address else backend),
                                   "--workers": ("pool.workers", workers), "--address": ("pool.address", address)})
    cfg = load_run_config(config, overrides, flags)
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
    print_rows(outcome)
    print_composition(outcome.run_dir, outcome.final_population[0])
    console.print(f"done in {time.perf_counter() - start:.1f}s; run directory: {outcome.run_dir}")


def _overrides(given: dict[str, tuple[str, object]]) -> tuple[dict[str, object], dict[str, str]]:
    """{flag: (dotted config key, value)} -> the overrides that were given, and the flag behind each
    key (an error in such a value names the flag, not the config file)."""
    set_ = {flag: (key, value) for flag, (key, value) in given.items() if value is not None}
    flags = {key: flag for flag, (key, _) in set_.items()}
    return {key: value for key, value in set_.values()}, flags
