"""Wires a run config to its parts: population, tasks, workers, store, engine.

Everything that can fail on bad input is loaded and checked before the run directory
is created, so a bad config never leaves a half-made run behind.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from evo_merge.config import RunConfig
from evo_merge.engine import Engine, EngineHooks
from evo_merge.errors import EvoMergeError
from evo_merge.fitness.metrics import make_metric
from evo_merge.fitness.tasks import Task, load_task
from evo_merge.genome import Genome
from evo_merge.merge import get_merge_method
from evo_merge.model_host import load_tokenizer
from evo_merge.operators.parents import PARENT_SELECTORS
from evo_merge.operators.selection import SELECTORS
from evo_merge.pool.factory import WorkerSpec, make_worker
from evo_merge.pool.jobs import Executor
from evo_merge.pool.local import LocalExecutor
from evo_merge.population import Population, load_population
from evo_merge.store import RunStore


@dataclass
class Prepared:
    population: Population
    members: dict[str, Genome]
    tasks: list[tuple[Task, float]]
    spec: WorkerSpec


def check_operators(cfg: RunConfig) -> None:
    """Fail early on unknown operator names and merge parameters."""
    evo = cfg.evolution
    for choice in evo.crossover.methods:
        get_merge_method(choice.method).resolve_params(choice.params)
    PARENT_SELECTORS.get(evo.crossover.parent_selection)
    SELECTORS.get(evo.selection.method)


def prepare(cfg: RunConfig) -> Prepared:
    """Load and validate everything a run needs, without touching the run directory.

    Tasks are tokenized once here to surface data problems; models load in the workers.
    """
    import torch

    check_operators(cfg)
    population = load_population(cfg.population)
    members = population.load_genomes()
    tasks = [(load_task(t.spec), t.weight) for t in cfg.tasks]
    tokenizer = load_tokenizer(population.base_dir, cfg.trust_remote_code)
    for task, _ in tasks:
        for split in ("fitness", "test"):
            make_metric(task.spec, task.examples(split), tokenizer, torch.device("cpu"), cfg.eval.batch_size)
    adapter = next(iter(population.member_dirs.values())) if population.spec.kind == "lora" else None
    spec = WorkerSpec(Path(cfg.out).resolve(), population.base_dir, adapter, next(iter(members.values())).layout,
                      tasks, cfg.eval.device, cfg.eval.dtype, cfg.eval.batch_size, cfg.trust_remote_code)
    return Prepared(population, members, tasks, spec)


def make_executor(cfg: RunConfig, spec: WorkerSpec) -> Executor:
    """The in-process worker, or a Ray pool (which loads one model per worker)."""
    if cfg.pool.backend == "local":
        return LocalExecutor(make_worker(spec, name="local"))
    from evo_merge.pool.ray_pool import RayExecutor
    return RayExecutor(spec, cfg.pool)


@dataclass
class RunOutcome:
    run_dir: Path
    final_population: list[int]
    rows: list[dict]


def execute(cfg: RunConfig, hooks: EngineHooks | None = None, prepared: Prepared | None = None,
            executor: Executor | None = None) -> RunOutcome:
    """Run evolution end to end and score the report on the test split."""
    prepared = prepared or prepare(cfg)
    own_executor = executor is None
    executor = executor or make_executor(cfg, prepared.spec)
    try:
        store = _create_store(cfg, executor)
        try:
            engine = Engine(cfg.evolution, cfg.seed, store, executor, prepared.members, hooks,
                            mode=cfg.pool.mode, async_offspring=cfg.pool.async_offspring)
            population = engine.run()
            rows = engine.report(population)
            store.lineage.set_meta("status", "finished")
            return RunOutcome(store.root, population, rows)
        finally:
            store.close()
    finally:
        if own_executor:
            executor.close()


def _create_store(cfg: RunConfig, executor: Executor) -> RunStore:
    """A new run directory that every worker can see; removed again if a worker cannot."""
    store = RunStore.create(cfg.out, cfg.model_dump(mode="json"))
    attach = getattr(executor, "attach_run_dir", None)
    if attach is not None:
        try:
            nodes = attach(store.root)
        except EvoMergeError:
            store.close()
            shutil.rmtree(store.root, ignore_errors=True)
            raise
        store.lineage.set_meta("nodes", sorted(set(nodes)))
    return store
