"""The generational driver: the stall rule's action if the search stalled, offspring, an
optional coefficient search, succession steps, selection, and a checkpoint, generation
after generation."""

from __future__ import annotations

import time

from evo_merge.engine.core import Engine
from evo_merge.engine.racing import race
from evo_merge.engine.search_step import search
from evo_merge.engine.unstall import admit, plan_unstall


def run_generations(engine: Engine, start: int, population: list[int]) -> list[int]:
    for g in range(start, engine.evo.generations + 1):
        population = generation(engine, g, population)
    return population


def generation(engine: Engine, g: int, population: list[int]) -> list[int]:
    begin = time.perf_counter()
    population, immigrants, boost, events = _unstall(engine, g, population)
    recipes = engine.planner.offspring(population, boost)
    if engine.evo.racing.enabled:
        children = immigrants + race(engine, "offspring", g, recipes, population)
    else:
        children = immigrants + engine.execute("offspring", g, recipes)
    sc = engine.evo.search
    if sc is not None and g % sc.every == 0:
        children.append(search(engine, g, population + children, sc))
    pool = population + children
    if engine.evo.succession.enabled:
        # moved individuals join the pool beside their predecessors: selection decides,
        # so a step that lands somewhere worse can never lose an elite
        moved = engine.execute("succession", g, engine.planner.succession(pool, g))
        pool += moved
        children += moved
    survivors = admit(engine.state, engine.planner.survivors(engine.state.unique(pool)), immigrants)
    engine.close_generation(g, survivors, len(children), time.perf_counter() - begin, events=events)
    return survivors


def _unstall(engine: Engine, g: int, population: list[int]) -> tuple[list[int], list[int], float, list[dict]]:
    """The stall rule's action for generation ``g``: (population, immigrants, mutation boost, events)."""
    plan = plan_unstall(engine, population)
    if plan is None:
        return population, [], 1.0, []
    population, recipes, boost, event = plan
    immigrants = engine.execute("immigrants", g, recipes)
    if "immigrants" in event:
        event["immigrants"] = immigrants
    return population, immigrants, boost, [event]
