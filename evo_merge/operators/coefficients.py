"""Crossover coefficients for chosen parents: from fitness, random, or given."""

from __future__ import annotations

from typing import Callable

import numpy as np

from evo_merge.operators.weighting import positive_weights
from evo_merge.registry import Registry

CoefficientScheme = Callable[..., list[float]]
COEFFICIENTS: Registry[CoefficientScheme] = Registry("coefficient scheme")


@COEFFICIENTS.register("fitness")
def from_fitness(fitness: np.ndarray, rng: np.random.Generator, **_) -> list[float]:
    """Parents' fitness normalised to sum 1 (GENOME)."""
    return [float(w) for w in positive_weights(fitness)]


@COEFFICIENTS.register("random")
def random_simplex(fitness: np.ndarray, rng: np.random.Generator, **_) -> list[float]:
    """A uniform draw from the simplex (Dirichlet(1, ..., 1))."""
    return [float(w) for w in rng.dirichlet(np.ones(len(fitness)))]


@COEFFICIENTS.register("given")
def given(fitness: np.ndarray, rng: np.random.Generator, given: list[float] | None = None, **_) -> list[float]:
    """Fixed coefficients from the config."""
    return [float(w) for w in given]


@COEFFICIENTS.register("subset")
def random_subset(fitness: np.ndarray, rng: np.random.Generator, **_) -> list[float]:
    """The uniform mix of a random non-empty subset of the parents (each in it with probability
    1/2): with the members as parents, any subset's plain average is one step away."""
    keep = subset_mask(len(fitness), rng)
    return [float(k) / float(keep.sum()) for k in keep]


def subset_mask(k: int, rng: np.random.Generator) -> np.ndarray:
    """A random non-empty subset of k items as a 0/1 vector."""
    while True:
        keep = rng.random(k) < 0.5
        if keep.any():
            return keep.astype(float)
