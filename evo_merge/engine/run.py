"""A whole evolution: the start (or a resume), then the generational or steady-state driver."""

from __future__ import annotations

from evo_merge.engine.core import Engine
from evo_merge.engine.generational import run_generations
from evo_merge.engine.steady_state import run_steady_state


def evolve(engine: Engine, mode: str = "generational", resume: bool = False,
           async_offspring: int | None = None) -> list[int]:
    """Initial population (or the last checkpoint's), then generations; returns the final population."""
    start, population, scheduler = engine.resume() if resume else (1, engine.initialize(), None)
    if mode == "async":
        return run_steady_state(engine, population, async_offspring, scheduler)
    return run_generations(engine, start, population)
