"""What the stall rule does when it fires, for both drivers: the restart population, the
immigrants' recipes and the mutation boost, planned in that order from the run's generator
(so a resumed run plans the same), and immigrants' admission: each survives its first
selection."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from evo_merge.operators.recipe import Recipe

if TYPE_CHECKING:
    from evo_merge.engine.core import Engine
    from evo_merge.engine.state import PopulationState


def plan_unstall(engine: "Engine", population: list[int]) -> tuple[list[int], list[Recipe], float, dict] | None:
    """None if the search has not stalled; else (population, immigrants' recipes, mutation
    boost, the event to record; its ``immigrants`` filled in by the driver with their ids)."""
    stall = engine.stall.stalled()
    if stall is None:
        return None
    cfg, n = engine.evo.stall, engine.evo.population_size
    event: dict = {"stall": stall, "actions": list(cfg.actions)}
    if "restart" in cfg.actions:
        population = engine.planner.archive(n)
        event["restart"] = population
    recipes: list[Recipe] = []
    if "immigrants" in cfg.actions:
        recipes = engine.planner.immigrants(max(1, math.ceil(cfg.immigrants * n)))
        event["immigrants"] = []
    boost = cfg.boost if "boost" in cfg.actions else 1.0
    if boost != 1.0:
        event["boost"] = boost
    return population, recipes, boost, event


def admit(state: "PopulationState", survivors: list[int], immigrants: list[int]) -> list[int]:
    """Immigrants survive their first selection: each one missing takes the place of the
    weakest survivor that is no immigrant (the fittest are never displaced)."""
    missing = [i for i in state.unique(immigrants) if i not in survivors]
    if not missing:
        return survivors
    ranked = state.ranked([s for s in survivors if s not in immigrants])
    keep = ranked[: max(1, len(survivors) - len(missing) - sum(1 for s in survivors if s in immigrants))]
    admitted = [s for s in survivors if s in immigrants] + missing
    return sorted(keep + admitted[: len(survivors) - len(keep)])
