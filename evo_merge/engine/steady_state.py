"""The steady-state driver: a new offspring starts as soon as a worker is free; each finished
one joins the population and selection trims it back to N. Every N/2 offspring is reported
as one generation, with a checkpoint that lists the offspring still in flight.

With racing (rules ``estimate`` and ``hoeffding``: there is no generation to halve), an
offspring is scored one stage at a time and goes on while it can still reach the weakest
individual of the population as it is when the stage ends; one that stops is recorded with
its partial score and never joins. An offspring in flight at a checkpoint starts again
from the first stage on resume.

The stall rule is checked after each report: when it fires, its immigrants are queued
(scored in full, each joining the population as it finishes and surviving that first
selection), a restart replaces the population, and offspring planned until the next report
mutate with the boosted sigma; the event is recorded with that next report. The check runs
again on resume from the report's checkpoint, so it plans the same."""

from __future__ import annotations

import time

from evo_merge.engine.core import Engine
from evo_merge.engine.racing import racer_of
from evo_merge.engine.unstall import admit, plan_unstall
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
    immigrants: dict[int, dict | None] = {}  # the stall rule's (no part of the budget): ticket -> its event
    stalled: dict = {"boost": 1.0, "event": None}  # the stall rule's action until the next report
    planned, done, generation = (state["planned"], state["done"], state["generation"]) if state else (0, 0, 1)
    report_start = time.perf_counter()
    engine.hooks.phase("offspring (async)", total)

    def start(recipe: Recipe, part: Partial | None = None, immigrant: bool = False) -> None:
        if part is not None:
            job = engine.stage_job(recipe, part.first, splits[part.stages])
        else:
            job = engine.job(recipe, split=splits[0]) if racer and not immigrant else engine.job(recipe)
        ticket = executor.submit(job)
        inflight[ticket] = recipe
        if part is not None:
            raced[ticket] = part
        if immigrant:
            immigrants[ticket] = stalled["event"]

    def unstall() -> None:
        nonlocal population
        plan = plan_unstall(engine, population) if planned < total else None
        stalled.update(boost=1.0, event=None)
        if plan is not None:
            population, recipes, stalled["boost"], stalled["event"] = plan
            for recipe in recipes:  # "immigrants" is in the event whenever there are some
                start(recipe, immigrant=True)

    def finished(ticket: int, res: JobResult) -> tuple[JobResult, int | None, bool] | None:
        """The result to record (with its rows and whether it may join), or None: it races on."""
        if racer is None or ticket in immigrants:
            return res, None, True
        part = raced.pop(ticket, None) or Partial(res)
        part.add(res.evaluation)
        if not racer.complete(part):
            cut = engine.state[engine.state.ranked(population)[-1]]
            if racer.goes_on(part, cut.fitness, cut.examples):
                start(inflight[ticket], part)
                return None
        return part.result(racer.weights), part.rows(), racer.complete(part)

    flags = (state or {}).get("immigrants") or []
    for k, recipe in enumerate((state or {}).get("inflight", [])):
        start(Recipe(**recipe), immigrant=k < len(flags) and flags[k])
    if state:
        unstall()  # as the uninterrupted run did right after this checkpoint
    while len(inflight) - len(immigrants) < executor.capacity and planned < total:
        start(engine.planner.one(population, stalled["boost"]))
        planned += 1
    while inflight:
        ticket, res = executor.next_done()
        outcome = finished(ticket, res)
        recipe = inflight.pop(ticket)
        if outcome is None:
            continue
        result, rows, joins = outcome
        child = engine.record(generation, recipe, result, rows=rows, eligible=joins)
        if ticket in immigrants:
            event = immigrants.pop(ticket)
            population = admit(engine.state, engine.planner.survivors(engine.state.unique(population + [child])),
                               [child])
            if event is not None:  # listed with the report that records the event (None: already recorded)
                event["immigrants"].append(child)
            continue
        if joins:
            population = engine.planner.survivors(engine.state.unique(population + [child]))
        done += 1
        engine.hooks.advance()
        if done % per_report == 0 or done == total:
            scheduler = {"planned": planned, "done": done, "generation": generation + 1,
                         "inflight": [inflight[t].to_dict() for t in sorted(inflight)],
                         "immigrants": [t in immigrants for t in sorted(inflight)]}
            pinned = {h for t in inflight for h in engine.persistence.reads(engine.job(inflight[t]))}
            engine.close_generation(generation, population, per_report if done % per_report == 0
                                    else done % per_report, time.perf_counter() - report_start, scheduler,
                                    events=[stalled["event"]] if stalled["event"] else None, pinned=pinned)
            report_start, generation = time.perf_counter(), generation + 1
            unstall()
        if planned < total:
            start(engine.planner.one(population, stalled["boost"]))
            planned += 1
    return population
