"""The engine's shared steps: ask the planner for recipes, have them built and scored by the
executor, tell the results to the population state and the lineage, close generations with
a checkpoint, and roll back to one on resume. The drivers (``generational.py``,
``steady_state.py``, ``search_step.py``) are short loops over these steps.

Fitness comes from the fitness split only; the test split is scored at the end for the
report (``report.py``) and never feeds back into any choice.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from evo_merge.config import EvolutionConfig
from evo_merge.engine.checkpoint import Checkpoint
from evo_merge.engine.hooks import EngineHooks, GenerationReport
from evo_merge.engine.persistence import Persistence, RebuildingExecutor
from evo_merge.engine.planner import Planner
from evo_merge.engine.stall import StallRule
from evo_merge.engine.state import PopulationState, Record
from evo_merge.fitness.checks import flat_task_warnings
from evo_merge.genome import Genome
from evo_merge.operators.recipe import Recipe
from evo_merge.pool.executor import Executor, run_all
from evo_merge.pool.jobs import Job, JobResult, RebuildEntry
from evo_merge.store import Individual, RunStore


class Engine:
    def __init__(self, evo: EvolutionConfig, seed: int, store: RunStore, executor: Executor,
                 members: dict[str, Genome], hooks: EngineHooks | None = None, heldout: bool = False,
                 lora_mode: str = "exact", tasks: Sequence = ()):
        """``tasks``: the fitness tasks and their weights."""
        self.evo, self.store, self.executor, self.members = evo, store, executor, members
        self.hooks = hooks or EngineHooks()
        self.persistence = Persistence(self)
        self.executor = RebuildingExecutor(executor, self.persistence)
        self.db = store.lineage
        self.heldout = heldout  # the run has held-out tasks: the report scores them too
        self.task_weights = list(tasks)  # (task, weight): for the members' sanity check and racing
        self.tasks = [t for t, _ in self.task_weights]
        self.state = PopulationState()
        layout = next(iter(members.values())).layout
        self.layout = layout
        # genomes with both LoRA factors record how they are merged; exact-LoRA and full ones need not
        self.lora_mode = lora_mode if layout.kind == "lora" else None
        self.planner = Planner(evo, self.state, np.random.default_rng(seed), self.lora_mode, layout.names)
        self.stall = StallRule(evo.stall)

    # -- ask / tell ---------------------------------------------------------------------------
    def job(self, recipe: Recipe, **kw) -> Job:
        """A job carrying the weight (and velocity) hashes of every individual the recipe names."""
        inputs, velocities = self.state.job_inputs(recipe)
        return Job(recipe=recipe, inputs=inputs, velocities=velocities, write=False, **kw)

    def stage_job(self, recipe: Recipe, first: JobResult, split: str) -> Job:
        """A later racing stage of an offspring not recorded yet: its weights by hash, with its
        recipe for a worker that does not hold them (another Ray worker scored the first stage)."""
        inputs, velocities = self.state.job_inputs(recipe)
        entry = RebuildEntry(recipe, inputs, velocities, first.weights, first.velocity)
        return Job(weights=first.weights, split=split, rebuild={first.weights: entry})

    def execute(self, phase: str, generation: int, recipes: Sequence[Recipe]) -> list[int]:
        """Build and score offspring, then record each in the lineage; returns their ids."""
        if not recipes:
            return []
        self.hooks.phase(phase, len(recipes))
        results = run_all(self.executor, [self.job(r) for r in recipes], on_done=lambda _: self.hooks.advance())
        return [self.record(generation, r, res) for r, res in zip(recipes, results)]

    def record(self, generation: int, recipe: Recipe | None, res: JobResult, name: str | None = None,
               rows: int | None = None, eligible: bool = True) -> int:
        """Tell one result to the lineage (one transaction) and to the population state. ``rows``:
        fitness rows scored, if racing stopped it early (``eligible=False``: it takes no part
        in selection)."""
        ind_id = self.db.next_id()
        ev = res.evaluation
        own = self.state.own_best(recipe, ind_id, ev.score)
        examples = np.concatenate([np.asarray(ev.example_scores[t], dtype=float) for t in sorted(ev.example_scores)]
                                  or [np.zeros(0)])
        made = (recipe or Recipe("member", params=None)).to_dict()  # type: ignore[arg-type]
        self.db.add(Individual(
            **made, id=ind_id, generation=generation, name=name, weights=res.weights, velocity=res.velocity,
            personal_best=own, fitness=ev.score, task_scores=ev.task_scores, build_seconds=res.build_seconds,
            eval_seconds=ev.seconds, worker=res.worker, node=res.node, fitness_rows=rows,
            partial=not eligible), example_scores=examples)
        self.state.records[ind_id] = Record(ev.score, res.weights, res.velocity, own, examples, eligible, recipe)
        return ind_id

    # -- the start, generations, resume -------------------------------------------------------
    def initialize(self) -> list[int]:
        """Score the members (generation 0); with init='pairs', seed the population with merged pairs."""
        self.hooks.phase("members", len(self.members))
        evaluations = []
        for name, genome in self.members.items():
            digest = self.store.weights.save(genome)
            res = run_all(self.executor, [Job(weights=digest, predictions=True)])[0]
            evaluations.append(res.evaluation)
            self.state.member_ids.append(self.record(0, None, res, name=name))
            self.hooks.advance()
        for message in flat_task_warnings(self.tasks, evaluations):
            self.hooks.warning(message)
        population = list(self.state.member_ids)
        if self.evo.init == "pairs":
            population = self.execute("pairs", 0, self.planner.initial_pairs(population))
        self.close_generation(0, population, len(population), 0.0)
        return population

    def close_generation(self, generation: int, population: list[int], offspring: int, seconds: float,
                         scheduler: dict | None = None, events: list[dict] | None = None,
                         pinned: Sequence[str] = ()) -> None:
        """Record the generation (and what the stall rule did in it) and, in the same transaction,
        the checkpoint a resume starts from. The population's weights are written before it
        commits; what only the previous checkpoint needed is deleted after (``pinned``: hashes
        jobs still in flight read)."""
        fit = self.state.fitness(population)
        report = GenerationReport(generation, float(fit.max()), float(fit.mean()), float(fit.std()), offspring, seconds)
        checkpoint = Checkpoint(generation, population, self.planner.rng.bit_generator.state, scheduler)
        self.persistence.write(population)
        self.db.set_population(generation, population, vars(report), checkpoint.to_json(), events)
        self.persistence.prune(population, pinned)
        self.stall.record(generation, report.best, report.std, bool(events))
        self.hooks.generation(report)
        for event in events or []:
            self.hooks.event(generation, event)

    def resume(self) -> tuple[int, list[int], dict | None]:
        """Roll the store back to its last checkpoint and restore the engine's state there.

        Everything recorded after the checkpoint is forgotten and made again: offspring
        seeds come from the restored generator, so they come out identical, and weight
        files are content-addressed, so rewriting one is harmless. The checkpoint's population
        is on disk (written before it committed); files written after it are deleted. Interrupted searches
        keep their candidate logs and continue by replay. Returns (next generation,
        population, async scheduler state)."""
        checkpoint = Checkpoint.load(self.db)
        self.db.rollback_to(None if checkpoint is None else checkpoint.to_json(with_last_id=True))
        if checkpoint is None:
            return 1, self.initialize(), None
        restored = PopulationState.restore(self.db)
        self.state.records, self.state.member_ids = restored.records, restored.member_ids
        self.persistence.prune(checkpoint.population)  # files written after the checkpoint
        self.stall = StallRule.from_db(self.evo.stall, self.db)
        self.planner.rng.bit_generator.state = checkpoint.rng_state
        return checkpoint.generation + 1, list(checkpoint.population), checkpoint.scheduler
