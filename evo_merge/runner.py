"""Wires a run config to its parts: population, tasks, model host, executor, store, engine.

Everything that can fail on bad input is loaded and checked before the run directory
is created, so a bad config never leaves a half-made run behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evo_merge.config import RunConfig
from evo_merge.engine import Engine, EngineHooks
from evo_merge.fitness.evaluator import LocalEvaluator
from evo_merge.fitness.tasks import Task, load_task
from evo_merge.genome import Genome
from evo_merge.merge import get_merge_method
from evo_merge.model_host import ModelHost
from evo_merge.operators.parents import PARENT_SELECTORS
from evo_merge.operators.selection import SELECTORS
from evo_merge.pool.local import LocalExecutor
from evo_merge.population import Population, load_population
from evo_merge.store import RunStore


@dataclass
class Prepared:
    population: Population
    members: dict[str, Genome]
    tasks: list[tuple[Task, float]]
    evaluator: LocalEvaluator


def check_operators(cfg: RunConfig) -> None:
    """Fail early on unknown operator names and merge parameters."""
    evo = cfg.evolution
    for choice in evo.crossover.methods:
        get_merge_method(choice.method).resolve_params(choice.params)
    PARENT_SELECTORS.get(evo.crossover.parent_selection)
    SELECTORS.get(evo.selection.method)


def prepare(cfg: RunConfig) -> Prepared:
    """Load and validate everything a run needs, without touching the run directory."""
    check_operators(cfg)
    population = load_population(cfg.population)
    members = population.load_genomes()
    tasks = [(load_task(t.spec), t.weight) for t in cfg.tasks]
    first_member = next(iter(population.member_dirs.values()))
    host = ModelHost(population.base_dir, next(iter(members.values())).layout,
                     adapter_dir=first_member if population.spec.kind == "lora" else None,
                     device=cfg.eval.device, dtype=cfg.eval.dtype, trust_remote_code=cfg.trust_remote_code)
    evaluator = LocalEvaluator(host, tasks, batch_size=cfg.eval.batch_size)
    return Prepared(population, members, tasks, evaluator)


@dataclass
class RunOutcome:
    run_dir: Path
    final_population: list[int]
    rows: list[dict]


def execute(cfg: RunConfig, hooks: EngineHooks | None = None, prepared: Prepared | None = None) -> RunOutcome:
    """Run evolution end to end and score the report on the test split."""
    prepared = prepared or prepare(cfg)
    store = RunStore.create(cfg.out, cfg.model_dump(mode="json"))
    try:
        executor = LocalExecutor(store, prepared.evaluator)
        engine = Engine(cfg.evolution, cfg.seed, store, executor, prepared.members, hooks)
        population = engine.run()
        rows = engine.report(population)
        store.lineage.set_meta("status", "finished")
        return RunOutcome(store.root, population, rows)
    finally:
        store.close()
