"""The steady-state driver: a new offspring starts as soon as a worker is free; each finished
one joins the population and selection trims it back to N. Every N/2 offspring is reported
as one generation, with a checkpoint that lists the offspring still in flight."""

from __future__ import annotations

import time

from evo_merge.engine.core import Engine
from evo_merge.operators.recipe import Recipe


def run_steady_state(engine: Engine, population: list[int], total: int | None = None,
                     state: dict | None = None) -> list[int]:
    evo, executor = engine.evo, engine.executor
    total = total or max(1, evo.generations * evo.population_size // 2)
    per_report = max(1, evo.population_size // 2)
    inflight: dict[int, Recipe] = {}
    planned, done, generation = (state["planned"], state["done"], state["generation"]) if state else (0, 0, 1)
    report_start = time.perf_counter()
    engine.hooks.phase("offspring (async)", total)

    def start(recipe: Recipe) -> None:
        inflight[executor.submit(engine.job(recipe))] = recipe

    for recipe in (state or {}).get("inflight", []):
        start(Recipe(**recipe))
    while len(inflight) < executor.capacity and planned < total:
        start(engine.planner.one(population))
        planned += 1
    while inflight:
        ticket, res = executor.next_done()
        child = engine.record(generation, inflight.pop(ticket), res)
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
