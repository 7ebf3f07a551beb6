"""Parent selection for crossover: pick k distinct indices of the population.

Roulette and tournament are the same rules as survivor selection (``selection.py``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from evo_merge.errors import EvoMergeError
from evo_merge.operators.selection import rank, roulette, tournament
from evo_merge.registry import Registry

ParentSelector = Callable[..., list[int]]
PARENT_SELECTORS: Registry[ParentSelector] = Registry("parent selection", builtins="evo_merge.operators.niches")
PARENT_SELECTORS.register("roulette")(roulette)
PARENT_SELECTORS.register("tournament")(tournament)
PARENT_SELECTORS.register("rank")(rank)


def choose_parents(name: str, fitness: np.ndarray, k: int, rng: np.random.Generator, **kw) -> list[int]:
    if k > len(fitness):
        raise EvoMergeError(f"crossover needs {k} parents but the population has {len(fitness)}")
    return PARENT_SELECTORS.get(name)(np.asarray(fitness, dtype=float), k, rng, **kw)


@PARENT_SELECTORS.register("random")
def uniform(fitness: np.ndarray, k: int, rng: np.random.Generator, **_) -> list[int]:
    """Uniformly random distinct parents."""
    return [int(i) for i in rng.choice(len(fitness), size=k, replace=False)]
