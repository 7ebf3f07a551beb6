"""Racing offspring (``evolution.racing``): each generation's offspring are scored on the
first stage of the fitness rows, and on each further stage only while the rule lets them
go on (``evo_merge/racing.py``): ``halving`` keeps the fittest ``keep`` share of those
still racing, ``estimate`` and ``hoeffding`` those that can still reach the cut, the
weakest individual of the current population.

Those that stop are recorded with their partial fitness and the number of rows it rests
on, and take no part in selection; the others end with a score on the whole fitness set.
The decisions depend only on scores, so runs stay deterministic and resumable.
"""

from __future__ import annotations

from typing import Sequence

from evo_merge.engine.core import Engine
from evo_merge.operators.recipe import Recipe
from evo_merge.pool.executor import run_all
from evo_merge.racing import Partial, Racer


def racer_of(engine: Engine) -> Racer:
    """The run's racing configuration over the engine's fitness tasks."""
    total = sum(w for _, w in engine.task_weights)
    return Racer(engine.evo.racing, {t.name: w / total for t, w in engine.task_weights},
                 {t.name: len(t.fitness) for t in engine.tasks})


def race(engine: Engine, phase: str, generation: int, recipes: Sequence[Recipe], cut_id: int) -> list[int]:
    """Build, race and record offspring against the individual ``cut_id``; returns the ids of
    those scored on the whole set."""
    if not recipes:
        return []
    racer = racer_of(engine)
    splits = racer.splits()
    cut = engine.state[cut_id]
    engine.hooks.phase(phase, len(recipes))
    first = run_all(engine.executor, [engine.job(r, split=splits[0]) for r in recipes])
    entries = []
    for res in first:
        entry = Partial(res)
        entry.add(res.evaluation)
        entries.append(entry)
    active = list(range(len(entries)))
    for split in splits[1:]:
        active = racer.next_stage({i: entries[i] for i in active}, cut.fitness, cut.examples)
        jobs = [engine.stage_job(recipes[i], entries[i].first, split) for i in active]
        for i, res in zip(active, run_all(engine.executor, jobs)):
            entries[i].add(res.evaluation)
    complete = []
    for recipe, entry in zip(recipes, entries):
        full = racer.complete(entry)
        ind = engine.record(generation, recipe, entry.result(racer.weights), rows=entry.rows(), eligible=full)
        engine.hooks.advance()
        if full:
            complete.append(ind)
    return complete
