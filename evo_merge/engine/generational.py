"""The generational driver: the stall rule's action if the search stalled, offspring, an
optional coefficient search, succession steps, selection, and a checkpoint, generation
after generation."""

from __future__ import annotations

import math
import time

from evo_merge.engine.core import Engine
from evo_merge.engine.racing import race
from evo_merge.engine.search_step import search


def run_generations(engine: Engine, start: int, population: list[int]) -> list[int]:
    for g in range(start, engine.evo.generations + 1):
        population = generation(engine, g, population)
    return population


def generation(engine: Engine, g: int, population: list[int]) -> list[int]:
    begin = time.perf_counter()
    population, immigrants, boost, events = _unstall(engine, g, population)
    recipes = engine.planner.offspring(population, boost)
    if engine.evo.racing.enabled:
        cut = engine.state.ranked(population)[-1]  # the weakest survivor
        children = immigrants + race(engine, "offspring", g, recipes, cut)
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
    survivors = _admit(engine, engine.planner.survivors(engine.state.unique(pool)), immigrants)
    engine.close_generation(g, survivors, len(children), time.perf_counter() - begin, events=events)
    return survivors


def _unstall(engine: Engine, g: int, population: list[int]) -> tuple[list[int], list[int], float, list[dict]]:
    """The stall rule's action for generation ``g``: (population, immigrants, mutation boost, events)."""
    stall = engine.stall.stalled()
    if stall is None:
        return population, [], 1.0, []
    cfg, n = engine.evo.stall, engine.evo.population_size
    event: dict = {"stall": stall, "actions": list(cfg.actions)}
    if "restart" in cfg.actions:
        population = engine.planner.archive(n)
        event["restart"] = population
    immigrants: list[int] = []
    if "immigrants" in cfg.actions:
        immigrants = engine.execute("immigrants", g, engine.planner.immigrants(max(1, math.ceil(cfg.immigrants * n))))
        event["immigrants"] = immigrants
    boost = cfg.boost if "boost" in cfg.actions else 1.0
    if boost != 1.0:
        event["boost"] = boost
    return population, immigrants, boost, [event]


def _admit(engine: Engine, survivors: list[int], immigrants: list[int]) -> list[int]:
    """Immigrants survive their first selection: each one missing takes the place of the
    weakest survivor that is no immigrant (the fittest are never displaced)."""
    missing = [i for i in engine.state.unique(immigrants) if i not in survivors]
    if not missing:
        return survivors
    ranked = engine.state.ranked([s for s in survivors if s not in immigrants])
    keep = ranked[: max(1, len(survivors) - len(missing) - sum(1 for s in survivors if s in immigrants))]
    admitted = [s for s in survivors if s in immigrants] + missing
    return sorted(keep + admitted[: len(survivors) - len(keep)])
