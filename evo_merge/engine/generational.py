"""The generational driver: offspring, an optional coefficient search, succession steps,
selection, and a checkpoint, generation after generation."""

from __future__ import annotations

import time

from evo_merge.engine.core import Engine
from evo_merge.engine.search_step import search


def run_generations(engine: Engine, start: int, population: list[int]) -> list[int]:
    for g in range(start, engine.evo.generations + 1):
        population = generation(engine, g, population)
    return population


def generation(engine: Engine, g: int, population: list[int]) -> list[int]:
    begin = time.perf_counter()
    children = engine.execute("offspring", g, engine.planner.offspring(population))
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
    survivors = engine.planner.survivors(engine.state.unique(pool))
    engine.close_generation(g, survivors, len(children), time.perf_counter() - begin)
    return survivors
