"""Wires a run config to its parts: population, tasks, workers, store, engine.

Everything that can fail on bad input is loaded and checked before the run directory
is created, so a bad config never leaves a half-made run behind.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from evo_merge.config import RunConfig, SearchConfig
from evo_merge.engine import Engine, EngineHooks
from evo_merge.errors import EvoMergeError
from evo_merge.fitness.metrics import make_metric
from evo_merge.fitness.tasks import Task, load_task
from evo_merge.genome import Genome, GenomeLayout
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
    if evo.search is not None:
        check_search(evo.search)


def check_search(search: SearchConfig, layout: GenomeLayout | None = None) -> None:
    """Fail early on an unknown optimizer, merge method or parameter, or groups that do not fit."""
    from evo_merge.merge.groups import tensor_groups
    from evo_merge.search.space import optimizer_class

    optimizer_class(search.optimizer)
    get_merge_method(search.method).resolve_params({k: v[0] if isinstance(v, list) else v
                                                    for k, v in search.params.items()})
    if layout is not None:
        tensor_groups(layout.names, search.granularity, search.layer_groups, search.filters)


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
    if cfg.evolution.search is not None:
        check_search(cfg.evolution.search, spec.layout)
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
    executor = executor or make_executor(cfg, _spec_for(cfg, prepared))
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


def execute_search(cfg: RunConfig, hooks: EngineHooks | None = None, prepared: Prepared | None = None,
                   executor: Executor | None = None, resume: bool = False) -> RunOutcome:
    """``evo-merge search``: the members' best composition for the task, found by Nevergrad."""
    prepared = prepared or prepare(cfg)
    check_search(cfg.search, prepared.spec.layout)
    store = open_for_resume(cfg) if resume else None
    own_executor = executor is None
    executor = executor or make_executor(cfg, _spec_for(cfg, prepared))
    try:
        if store is None:
            store = _create_store(cfg, executor)
        elif getattr(executor, "attach_run_dir", None) is not None:
            executor.attach_run_dir(store.root)
        try:
            engine = Engine(cfg.evolution, cfg.seed, store, executor, prepared.members, hooks)
            result = engine.run_search(cfg.search)
            rows = engine.search_report(result)
            store.lineage.set_meta("status", "finished")
            return RunOutcome(store.root, [result], rows)
        finally:
            store.close()
    finally:
        if own_executor:
            executor.close()


def _spec_for(cfg: RunConfig, prepared: Prepared) -> WorkerSpec:
    """The prepared worker spec, pointed at this config's run directory."""
    return replace(prepared.spec, run_dir=Path(cfg.out).resolve())


RESUME_KEYS = ("optimizer", "budget", "num_workers")


def open_for_resume(cfg: RunConfig) -> RunStore:
    """The run directory of an interrupted search, if its settings equal ``cfg``'s."""
    store = RunStore.open(cfg.out)
    try:
        if store.lineage.meta("status") == "finished":
            raise EvoMergeError(f"the search in {cfg.out} has already finished")
        stored = store.config()
        now = cfg.model_dump(mode="json")
        old_search, new_search = stored.get("search") or {}, now["search"]
        for key in RESUME_KEYS + tuple(sorted(set(old_search) | set(new_search))):
            if old_search.get(key) != new_search.get(key):
                raise EvoMergeError(f"cannot resume {cfg.out}: search.{key} was {old_search.get(key)!r}, now "
                                    f"{new_search.get(key)!r}; resume with the settings it started with")
        for key in ("seed", "population", "tasks", "eval"):
            if stored.get(key) != now[key]:
                raise EvoMergeError(f"cannot resume {cfg.out}: {key} differs from the run's config.yaml")
    except BaseException:
        store.close()
        raise
    return store


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
