"""An operator plugin: step past the best individual, away from the runner-up.

``Config`` is its settings as an ``evolution.operators`` entry, ``Params`` what each
recipe stores; ``plan`` draws every random choice from the run's generator (``ctx``), so
runs stay reproducible and resumable, and ``build`` rebuilds the child anywhere.
"""

import numpy as np
from pydantic import Field

from evo_merge.operators.base import Operator, Strict, register
from evo_merge.operators.recipe import Built, Recipe


class ExtrapolateConfig(Strict):
    rate: float = Field(0.5, ge=0, le=1, description="probability of one extrapolation per generation")
    t: float = Field(0.5, gt=0, description="how far past the best, in units of (best - runner-up)")


class ExtrapolateParams(Strict):
    t: float = Field(gt=0)


@register
class Extrapolate(Operator):
    """best + t * (best - runner-up)"""

    name = "extrapolate"
    Config = ExtrapolateConfig
    Params = ExtrapolateParams
    color = "#fff2b3"

    @classmethod
    def plan(cls, ctx, population, fitness, config):
        if len(population) < 2 or ctx.rng.random() >= config.rate:
            return []
        best, second = np.argsort(-fitness, kind="stable")[:2]
        return [Recipe(cls.name, [population[best], population[second]], params={"t": config.t}, seed=ctx.seed())]

    @classmethod
    def build(cls, recipe, fetch, fetch_velocity):
        t = cls.params(recipe).t
        best, second = (fetch(i) for i in recipe.parents)
        return Built(best.with_flat(best.flat.float() * (1 + t) - second.flat.float() * t))

    @classmethod
    def roles(cls, recipe):
        return ["best", "runner-up"]
