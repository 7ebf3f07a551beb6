"""The steady-state driver: a new offspring starts as soon as a worker is free; each finished
one joins the population and selection trims it back to N. Every N/2 offspring is reported
as one generation, with a checkpoint that lists the offspring still in flight.

With racing (rules ``estimate`` and ``hoeffding``: there is no generation to halve), an
offspring is scored one stage at a time and goes on while it can still reach the weakest
individual of the population as it is when the stage ends; one that stops is recorded with
its partial score and never joins. An offspring in flight at a checkpoint starts again
from the first stage on resume."""

from __future__ import annotations

import time

from evo_merge.engine.core import Engine
from evo_merge.engine.racing import racer_of
from evo_merge.operators.recipe import Recipe
from evo_merge.pool.jobs import JobResult
from evo_merge.racing import Partial


def run_steady_state(engine: Engine, population: list[int], total: int | None = None,
                     state: dict | None = None) -> list[int]:
    evo, executor = engine.evo, engine.executor
    total = total or max(1, evo.generations * evo.population_size // 2)
    per_report = max(1, evo.population_size // 2)
    racer = racer_of(engine) if evo.racing.enabled else None
    splits = racer.splits() if racer else []
    inflight: dict[int, Recipe] = {}
    raced: dict[int, Partial] = {}  # ticket -> what its offspring was scored on so far (later stages)
    planned, done, generation = (state["planned"], state["done"], state["generation"]) if state else (0, 0, 1)
    report_start = time.perf_counter()
    engine.hooks.phase("offspring (async)", total)

    def start(recipe: Recipe, part: Partial | None = None) -> None:
        if part is not None:
            job = engine.stage_job(recipe, part.first, splits[part.stages])
        else:
            job = engine.job(recipe, split=splits[0]) if racer else engine.job(recipe)
        ticket = executor.submit(job)
        inflight[ticket] = recipe
        if part is not None:
            raced[ticket] = part

    def finished(ticket: int, res: JobResult) -> tuple[JobResult, int | None, bool] | None:
        """The result to record (with its rows and whether it may join), or None: it races on."""
        if racer is None:
            return res, None, True
        part = raced.pop(ticket, None) or Partial(res)
        part.add(res.evaluation)
        if not racer.complete(part):
            cut = engine.state[engine.state.ranked(population)[-1]]
            if racer.goes_on(part, cut.fitness, cut.examples):
                start(inflight[ticket], part)
                return None
        return part.result(racer.weights), part.rows(), racer.complete(part)

    for recipe in (state or {}).get("inflight", []):
        start(Recipe(**recipe))
    while len(inflight) < executor.capacity and planned < total:
        start(engine.planner.one(population))
        planned += 1
    while inflight:
        ticket, res = executor.next_done()
        outcome = finished(ticket, res)
        recipe = inflight.pop(ticket)
        if outcome is None:
            continue
        result, rows, joins = outcome
        child = engine.record(generation, recipe, result, rows=rows, eligible=joins)
        if joins:
            population = engine.planner.survivors(engine.state.unique(population + [child]))
        done += 1
        engine.hooks.advance()
        if done % per_report == 0 or done == total:
            scheduler = {"planned": planned, "done": done, "generation": generation + 1,
                         "inflight": [inflight[t].to_dict() for t in sorted(inflight)]}
            pinned = {h for t in inflight for h in engine.persistence.reads(engine.job(inflight[t]))}
            engine.close_generation(generation, population, per_report if done % per_report == 0
                                    else done % per_report, time.perf_counter() - report_start, scheduler,
                                    pinned=pinned)
            report_start, generation = time.perf_counter(), generation + 1
        if planned < total:
            start(engine.planner.one(population))
            planned += 1
    return population
