"""Racing offspring (``evolution.racing``): each generation's offspring are scored on the
first stage of the fitness rows, and on each further stage only while the rule lets them
go on (``evo_merge/racing.py``): ``survival`` keeps those the run's selection would keep
from the population and the offspring (unscored rows at the population's best on them),
``halving`` the fittest ``keep`` share of those still racing, ``estimate`` and ``hoeffding``
those that can still reach the cut, the weakest individual of the current population.
With ``order: informative`` the stages take the rows on which the population's scores
differ most first.

Those that stop are recorded with their partial fitness and the number of rows it rests
on, and take no part in selection; the others end with a score on the whole fitness set.
The decisions depend only on scores (and a copy of the run's generator), so runs stay
deterministic and resumable.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from evo_merge.engine.core import Engine
from evo_merge.operators.recipe import Recipe
from evo_merge.pool.executor import run_all
from evo_merge.racing import Partial, Racer, informative_order


def racer_of(engine: Engine, population: Sequence[int] | None = None) -> Racer:
    """The run's racing configuration over the engine's fitness tasks; with ``order:
    informative``, stages take rows in the order ``population``'s scores give."""
    total = sum(w for _, w in engine.task_weights)
    totals = {t.name: len(t.fitness) for t in engine.tasks}
    order = None
    if engine.evo.racing.order == "informative" and population is not None:
        order = informative_order(engine.state.examples(population), totals)
    return Racer(engine.evo.racing, {t.name: w / total for t, w in engine.task_weights}, totals, order)


def race(engine: Engine, phase: str, generation: int, recipes: Sequence[Recipe], population: list[int]) -> list[int]:
    """Build, race and record offspring of ``population``; returns the ids of those scored on
    the whole set."""
    if not recipes:
        return []
    racer = racer_of(engine, population)
    splits = racer.splits()
    cut = engine.state[engine.state.ranked(population)[-1]]  # the weakest survivor
    engine.hooks.phase(phase, len(recipes))
    first = run_all(engine.executor, [engine.job(r, split=splits[0]) for r in recipes])
    entries = []
    for res in first:
        entry = Partial(res)
        entry.add(res.evaluation, racer.stage_rows(0))
        entries.append(entry)
    active = list(range(len(entries)))
    for k, split in enumerate(splits[1:], start=1):
        if racer.cfg.rule == "survival":  # once stopped, an offspring stays stopped
            active = [i for i in _would_survive(engine, racer, population, entries) if i in active]
        else:
            active = racer.next_stage({i: entries[i] for i in active}, cut.fitness, cut.examples)
        jobs = [engine.stage_job(recipes[i], entries[i].first, split) for i in active]
        for i, res in zip(active, run_all(engine.executor, jobs)):
            entries[i].add(res.evaluation, racer.stage_rows(k))
    complete = []
    for recipe, entry in zip(recipes, entries):
        full = racer.complete(entry)
        ind = engine.record(generation, recipe, entry.result(racer.weights), rows=entry.rows(), eligible=full)
        engine.hooks.advance()
        if full:
            complete.append(ind)
    return complete


def _would_survive(engine: Engine, racer: Racer, population: list[int], entries: list[Partial]) -> list[int]:
    """Offspring (by index) the run's selection keeps from the population and every offspring,
    each offspring's unscored rows at the best score any member of the population has on
    them (so an offspring stops only where even that would not let it survive); a copy of a
    population member's or an earlier offspring's genome never survives (selection keeps the
    earliest)."""
    members = engine.state.examples(population)
    if members is None:  # no per-row scores to estimate from: every offspring goes on
        return list(range(len(entries)))
    prior = members.max(axis=0)
    seen = {engine.state[i].weights for i in population}
    pool, rows = [], [members]
    for i, entry in enumerate(entries):
        if entry.first.weights not in seen:
            seen.add(entry.first.weights)
            pool.append(i)
            rows.append(racer.estimated(entry, prior)[None, :])
    examples = np.concatenate(rows)
    fitness = np.array([sum(racer.weights[name] * float(s.mean()) for name, s in racer.per_task(row).items())
                        for row in examples])
    fitness[:len(population)] = engine.state.fitness(population)
    kept = engine.planner.would_survive(fitness, examples)
    return sorted(pool[j - len(population)] for j in kept if j >= len(population))
