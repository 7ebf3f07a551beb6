"""Racing: an offspring is scored on a part of the fitness set first, and on more of it only
while it can still enter the survivors (successive halving with a Hoeffding bound, as irace
and ASHA race configurations).

Stages are fractions of every task's fitness rows (default a quarter, a half, all). After a
stage, an offspring goes on if an optimistic estimate of its whole-set fitness (the rows
scored, plus the rest at the upper confidence bound of its rate so far) reaches the cut:
the fitness of the weakest individual of the current population. Those that stop are
recorded with their partial fitness and the number of rows it rests on, and take no part
in selection; the survivors are always scored on the whole fitness set. The decisions
depend only on scores, so runs stay deterministic and resumable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evo_merge.engine.core import Engine
from evo_merge.fitness.evaluator import Evaluation
from evo_merge.operators.recipe import Recipe
from evo_merge.pool.executor import run_all
from evo_merge.pool.jobs import Job, JobResult


def stage_split(lo: float, hi: float) -> str:
    return "fitness" if (lo, hi) == (0.0, 1.0) else f"fitness[{lo:g}:{hi:g}]"


@dataclass
class _Entry:
    recipe: Recipe
    first: JobResult
    examples: dict[str, list[np.ndarray]]
    seconds: float

    def add(self, ev: Evaluation) -> None:
        for name, scores in ev.example_scores.items():
            self.examples.setdefault(name, []).append(np.asarray(scores, dtype=float))
        self.seconds += ev.seconds

    def scored(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.examples.items()}


def optimistic(entry: _Entry, weights: dict[str, float], totals: dict[str, int], delta: float) -> float:
    """Upper estimate of the whole-set fitness: rows scored, the rest at the rate's UCB."""
    value = 0.0
    for name, scores in entry.scored().items():
        n, total = len(scores), totals[name]
        rate = min(1.0, float(scores.mean()) + math.sqrt(math.log(1 / delta) / (2 * n))) if n else 1.0
        value += weights[name] * (float(scores.sum()) + rate * (total - n)) / total
    return value


def race(engine: Engine, phase: str, generation: int, recipes: Sequence[Recipe], cut: float) -> list[int]:
    """Build, race and record offspring; returns the ids of those scored on the whole set."""
    if not recipes:
        return []
    cfg = engine.evo.racing
    bounds = [0.0, *cfg.stages]
    engine.hooks.phase(phase, len(recipes))
    first = run_all(engine.executor, [engine.job(r, split=stage_split(bounds[0], bounds[1])) for r in recipes])
    entries = []
    for recipe, res in zip(recipes, first):
        entry = _Entry(recipe, res, {}, 0.0)
        entry.add(res.evaluation)
        entries.append(entry)
    totals = {t.name: len(t.fitness) for t in engine.tasks}
    weights = _weights(engine)
    active = list(range(len(entries)))
    for lo, hi in zip(bounds[1:], bounds[2:]):
        active = [i for i in active if optimistic(entries[i], weights, totals, cfg.delta) >= cut]
        jobs = [Job(weights=entries[i].first.weights, split=stage_split(lo, hi)) for i in active]
        for i, res in zip(active, run_all(engine.executor, jobs)):
            entries[i].add(res.evaluation)
    complete = []
    for i, entry in enumerate(entries):
        scored = entry.scored()
        task_scores = {name: float(s.mean()) for name, s in scored.items()}
        ev = Evaluation(float(sum(weights[n] * v for n, v in task_scores.items())), task_scores, scored, {},
                        entry.seconds)
        res = JobResult(entry.first.weights, entry.first.velocity, ev, entry.first.build_seconds,
                        entry.first.worker, entry.first.node)
        rows = sum(len(s) for s in scored.values())
        ind = engine.record(generation, entry.recipe, res, rows=rows, eligible=rows == sum(totals.values()))
        engine.hooks.advance()
        if rows == sum(totals.values()):
            complete.append(ind)
    return complete


def _weights(engine: Engine) -> dict[str, float]:
    total = sum(w for _, w in engine.task_weights)
    return {t.name: w / total for t, w in engine.task_weights}
