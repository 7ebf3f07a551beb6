"""Survivor selection: keep ``n`` of the pool, elites first, the rest by a registered rule."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from evo_merge.operators.weighting import positive_weights
from evo_merge.registry import Registry

Selector = Callable[..., list[int]]
SELECTORS: Registry[Selector] = Registry("selection method", builtins="evo_merge.operators.niches")


def elite_count(fraction: float, n: int) -> int:
    """ceil(fraction * n), and at least one whenever fraction > 0 (GENOME's default gave zero)."""
    return 0 if fraction <= 0 else max(1, math.ceil(fraction * n))


def select_survivors(method: str, fitness: np.ndarray, n: int, rng: np.random.Generator,
                     elite_fraction: float = 0.1, tournament_size: int = 3,
                     examples: np.ndarray | None = None) -> list[int]:
    """Indices of ``n`` survivors (all of them if the pool is not larger), fittest elites kept.
    ``examples`` (pool x examples) are per-example scores, for niche-aware methods."""
    fitness = np.asarray(fitness, dtype=float)
    if len(fitness) <= n:
        return list(range(len(fitness)))
    order = list(np.argsort(-fitness, kind="stable"))
    elites = [int(i) for i in order[: elite_count(elite_fraction, n)]]
    rest = [i for i in range(len(fitness)) if i not in elites]
    sub = None if examples is None else np.asarray(examples)[rest]
    picked = SELECTORS.get(method)(fitness[rest], n - len(elites), rng, tournament_size=tournament_size,
                                   examples=sub)
    return sorted(elites + [rest[i] for i in picked])


@SELECTORS.register("elites")
def truncation(fitness: np.ndarray, k: int, rng: np.random.Generator, **_) -> list[int]:
    """The k fittest."""
    return [int(i) for i in np.argsort(-fitness, kind="stable")[:k]]


@SELECTORS.register("tournament")
def tournament(fitness: np.ndarray, k: int, rng: np.random.Generator, tournament_size: int = 3, **_) -> list[int]:
    """k winners of tournaments among those not yet chosen."""
    chosen: list[int] = []
    for _ in range(k):
        pool = np.array([i for i in range(len(fitness)) if i not in chosen])
        entrants = rng.choice(pool, size=min(tournament_size, len(pool)), replace=False)
        chosen.append(int(entrants[np.argmax(fitness[entrants])]))
    return chosen


@SELECTORS.register("roulette")
def roulette(fitness: np.ndarray, k: int, rng: np.random.Generator, **_) -> list[int]:
    """Fitness-proportional sampling without replacement."""
    return [int(i) for i in rng.choice(len(fitness), size=k, replace=False, p=positive_weights(fitness))]


@SELECTORS.register("rank")
def rank(fitness: np.ndarray, k: int, rng: np.random.Generator, **_) -> list[int]:
    """Sampling without replacement with probability proportional to rank (worst = 1)."""
    ranks = np.empty(len(fitness))
    ranks[np.argsort(fitness, kind="stable")] = np.arange(1, len(fitness) + 1)
    return [int(i) for i in rng.choice(len(fitness), size=k, replace=False, p=ranks / ranks.sum())]
