"""Wires a run config to its parts: population, tasks, workers, store, engine.

Everything that can fail on bad input is loaded and checked before the run directory
is created, so a bad config never leaves a half-made run behind.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, replace
from typing import Callable
from pathlib import Path

from pydantic import ValidationError

from evo_merge.checks import check_device, check_operators, check_racing, check_search
from evo_merge.config import RunConfig
from evo_merge.yamlfile import validation_message
from evo_merge.engine import Engine, EngineHooks
from evo_merge.engine.report import report, search_report
from evo_merge.engine.merge_step import run_fixed_merge
from evo_merge.engine.run import evolve
from evo_merge.engine.search_step import run_search
from evo_merge.errors import EvoMergeError, RunInterrupted, machine_error
from evo_merge.fitness.metrics import make_metric
from evo_merge.fitness.tasks import Task, load_task
from evo_merge.genome import Genome
from evo_merge.model_host import load_tokenizer
from evo_merge.plugins import load_plugins
from evo_merge.pool.factory import WorkerSpec, make_worker
from evo_merge.pool.executor import Executor
from evo_merge.pool.local import LocalExecutor
from evo_merge.population import Population, load_population
from evo_merge.run_inputs import ensure_inputs, redirect_config
from evo_merge.store import RunStore


@dataclass
class Prepared:
    population: Population
    members: dict[str, Genome]
    tasks: list[tuple[Task, float]]
    spec: WorkerSpec


def prepare(cfg: RunConfig) -> Prepared:
    """Load and validate everything a run needs, without touching the run directory.

    Tasks are tokenized once here to surface data problems; models load in the workers.
    """
    import torch

    load_plugins(cfg.plugins)
    check_operators(cfg)
    check_device(cfg)
    population = load_population(cfg.population)
    members = population.load_genomes(cfg.lora.mode, cfg.lora.max_rank)
    tasks = [(load_task(t.spec, t.overrides), t.weight) for t in cfg.tasks]
    heldout = [(load_task(t.spec, t.overrides), t.weight) for t in cfg.heldout_tasks]
    if cfg.evolution.racing.enabled and cfg.evolution.racing.rule == "hoeffding":
        check_racing(tasks)
    names = [t.name for t, _ in tasks + heldout]
    if len(set(names)) != len(names):
        raise EvoMergeError(f"task names must be distinct across tasks and heldout_tasks: {names}")
    tokenizer = load_tokenizer(population.base_dir, cfg.trust_remote_code)
    population.check_tokenizers(tokenizer, cfg.trust_remote_code)
    for task, _ in tasks + heldout:
        for split in ("fitness", "test"):
            make_metric(task.spec, task.examples(split), tokenizer, torch.device("cpu"), cfg.eval.batch_size)
    adapter = next(iter(population.member_dirs.values())) if population.spec.kind == "lora" else None
    spec = WorkerSpec(Path(cfg.out).resolve(), population.base_dir, adapter, next(iter(members.values())).layout,
                      tasks, cfg.eval.device, cfg.eval.dtype, cfg.eval.batch_size, cfg.trust_remote_code,
                      heldout, list(cfg.plugins), dict(population.member_dirs), cfg.lora.max_rank)
    if cfg.evolution.search is not None:
        check_search(cfg.evolution.search, spec.layout)
    return Prepared(population, members, tasks, spec)


def make_executor(cfg: RunConfig, spec: WorkerSpec) -> Executor:
    """The in-process worker, or a Ray pool (which loads one model per worker)."""
    batch = max(1, cfg.eval.multi_lora)
    if cfg.pool.backend == "local":
        return LocalExecutor(make_worker(spec, name="local"), batch=batch)
    from evo_merge.pool.ray_pool import RayExecutor
    return RayExecutor(spec, cfg.pool, batch=batch)


@dataclass
class RunOutcome:
    run_dir: Path
    final_population: list[int]
    rows: list[dict]


def execute(cfg: RunConfig, hooks: EngineHooks | None = None, prepared: Prepared | None = None,
            executor: Executor | None = None, resume: bool = False) -> RunOutcome:
    """Run evolution end to end (or continue a stopped run) and score the report on the test split."""
    def body(engine: Engine) -> RunOutcome:
        population = evolve(engine, cfg.pool.mode, resume, cfg.pool.async_offspring)
        return RunOutcome(engine.store.root, population, report(engine, population))

    return _drive(cfg, "evolution", body, hooks, prepared, executor, resume)


def execute_search(cfg: RunConfig, hooks: EngineHooks | None = None, prepared: Prepared | None = None,
                   executor: Executor | None = None, resume: bool = False) -> RunOutcome:
    """``evo-merge search``: the members' best composition for the task, found by Nevergrad."""
    prepared = prepared or prepare(cfg)
    check_search(cfg.search, prepared.spec.layout)

    def body(engine: Engine) -> RunOutcome:
        result = run_search(engine, cfg.search, resume=resume)
        return RunOutcome(engine.store.root, [result], search_report(engine, result))

    return _drive(cfg, "search", body, hooks, prepared, executor, resume)


def execute_merge(cfg: RunConfig, names: list[str], hooks: EngineHooks | None = None,
                  prepared: Prepared | None = None, executor: Executor | None = None) -> RunOutcome:
    """The plain average of the named members, as a run (``evo-merge compare``'s oracle baseline)."""
    def body(engine: Engine) -> RunOutcome:
        result = run_fixed_merge(engine, names)
        return RunOutcome(engine.store.root, [result], search_report(engine, result, "relevant average"))

    return _drive(cfg, "merge", body, hooks, prepared, executor, False)


def _drive(cfg: RunConfig, kind: str, body: Callable[[Engine], RunOutcome], hooks: EngineHooks | None,
           prepared: Prepared | None, executor: Executor | None, resume: bool) -> RunOutcome:
    """Open (resume) or create the run directory, run ``body`` on an engine, mark it finished."""
    prepared = prepared or prepare(cfg)
    store = open_for_resume(cfg, kind) if resume else None
    own_executor = executor is None
    created, existed = False, Path(cfg.out).exists()
    digests = {task.name: task.digest() for task, _ in prepared.tasks}
    try:
        if store is not None:
            _check_task_digests(store, digests)
        if executor is None:
            if hooks is not None and cfg.pool.backend == "ray":
                where = f"joining Ray at {cfg.pool.address}" if cfg.pool.address else "starting Ray"
                hooks.phase(f"{where} ({cfg.pool.workers} workers)", None)
            executor = make_executor(cfg, _spec_for(cfg, prepared))
        if store is None:
            store = _create_store(cfg, executor, kind)
            created = True
            store.lineage.set_meta("task_digests", digests)
        else:
            _attach(store, executor)
        ensure_inputs(store.root, cfg, prepared.population)  # a new run's own copy; a resumed run's check
        engine = Engine(cfg.evolution, cfg.seed, store, executor, prepared.members, hooks,
                        heldout=bool(prepared.spec.heldout), lora_mode=cfg.lora.mode,
                        tasks=prepared.tasks)
        outcome = body(engine)
        store.lineage.set_meta("status", "finished")
        return outcome
    except KeyboardInterrupt:
        if store is None:
            raise
        done = store.lineage.last_generation()
        raise RunInterrupted(f"interrupted at generation {0 if done is None else done + 1}; continue with: "
                             f"evo-merge resume {cfg.out}") from None
    except (EvoMergeError, OSError, sqlite3.OperationalError) as exc:
        resumable = store is not None and store.lineage.last_generation() is not None
        if created and store is not None and not resumable:
            # Bad input found while scoring the members (a metric that raises, say): nothing
            # worth resuming exists yet, so leave no half-made run directory behind.
            store.close()
            shutil.rmtree(store.root, ignore_errors=True)
            if existed:  # the user's own empty directory stays, empty
                store.root.mkdir(exist_ok=True)
            store = None
        if isinstance(exc, EvoMergeError):
            raise
        hint = f"; once fixed, continue with: evo-merge resume {cfg.out}" if resumable else ""
        raise EvoMergeError(f"{machine_error(exc)} (run directory {cfg.out}){hint}") from None
    finally:
        if store is not None:
            store.close()
        if own_executor and executor is not None:
            executor.close()


def _check_task_digests(store: RunStore, digests: dict[str, str]) -> None:
    """Refuse to resume when a task's examples or spec changed since the run started."""
    stored = store.lineage.meta("task_digests")
    for name, digest in (stored or {}).items():
        if digests.get(name) != digest:
            raise EvoMergeError(f"cannot resume {store.root}: task {name}'s spec or data changed since the run "
                                "started; restore them or start a new run")


def _spec_for(cfg: RunConfig, prepared: Prepared) -> WorkerSpec:
    """The prepared worker spec, pointed at this config's run directory."""
    return replace(prepared.spec, run_dir=Path(cfg.out).resolve())


RESUME_KEYS = ("optimizer", "budget", "num_workers")


def load_stored_config(store: RunStore) -> RunConfig:
    """The config a run started with, pointed at its run directory and its own copies of the
    population and task specs (``run_inputs``)."""
    data = {**redirect_config(store.root, store.config()), "out": str(store.root)}
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise EvoMergeError(validation_message(store.root / "config.yaml", exc, RunConfig)) from None
    load_plugins(cfg.plugins)
    return cfg


def open_for_resume(cfg: RunConfig, kind: str) -> RunStore:
    """The stopped run in ``cfg.out``, locked, if it is of ``kind`` and its settings equal ``cfg``'s."""
    store = RunStore.open(cfg.out, lock=True)
    try:
        lineage = store.lineage
        if lineage.meta("status") == "finished":
            raise EvoMergeError(f"the {lineage.meta('kind', kind)} run in {cfg.out} has already finished")
        if lineage.meta("kind", kind) != kind:
            raise EvoMergeError(f"{cfg.out} holds a {lineage.meta('kind')} run, not a {kind} run")
        stored = store.config()
        copies = redirect_config(store.root, stored)  # a resume reads the run's own copies
        now = cfg.model_dump(mode="json")
        if kind == "search":
            old_search, new_search = stored.get("search") or {}, now["search"]
            for key in RESUME_KEYS + tuple(sorted(set(old_search) | set(new_search))):
                if old_search.get(key) != new_search.get(key):
                    raise EvoMergeError(f"cannot resume {cfg.out}: search.{key} was {old_search.get(key)!r}, now "
                                        f"{new_search.get(key)!r}; resume with the settings it started with")
        for key in ("seed", "population", "tasks", "eval", "evolution"):
            if stored.get(key) != now[key] and copies.get(key) != now[key]:
                raise EvoMergeError(f"cannot resume {cfg.out}: {key} differs from the run's config.yaml")
    except BaseException:
        store.close()
        raise
    return store


def resume_run(run_dir: Path, hooks: EngineHooks | None = None, prepared: Prepared | None = None) -> RunOutcome:
    """``evo-merge resume``: continue a stopped or crashed run with the config it started with."""
    with RunStore.open(run_dir) as probe:
        cfg = load_stored_config(probe)
        kind = probe.lineage.meta("kind", "evolution")
    return (execute_search if kind == "search" else execute)(cfg, hooks, prepared, resume=True)


def _attach(store: RunStore, executor: Executor) -> None:
    store.lineage.set_meta("nodes", sorted(set(executor.attach(store.root))))


def _create_store(cfg: RunConfig, executor: Executor, kind: str = "evolution") -> RunStore:
    """A new run directory that every worker can see; removed again if a worker cannot."""
    store = RunStore.create(cfg.out, cfg.model_dump(mode="json"), kind)
    try:
        nodes = executor.attach(store.root)
    except EvoMergeError:
        store.close()
        shutil.rmtree(store.root, ignore_errors=True)
        raise
    store.lineage.set_meta("nodes", sorted(set(nodes)))
    return store
