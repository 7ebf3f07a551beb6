"""M2N2-style niche operators over per-example results (Abrantes et al., 2025).

Each fitness example is a resource of capacity 1 shared by the individuals that score
on it. An individual's shared fitness is the sum, over examples, of its score divided
by the total score all individuals take from that example. Individuals that solve
examples few others solve therefore keep a high shared fitness even when their plain
fitness is average. That keeps niches alive, which merging needs to have something
to combine.

Attraction picks the second parent where the first is weak: the pull of B on A is the
shared value of the examples B scores better on than A.
"""

from __future__ import annotations

import numpy as np

from evo_merge.errors import EvoMergeError
from evo_merge.operators.parents import PARENT_SELECTORS
from evo_merge.operators.selection import SELECTORS
from evo_merge.operators.weighting import positive_weights

EPS = 1e-9


def _matrix(examples: np.ndarray | None, n: int, what: str) -> np.ndarray:
    if examples is None:
        raise EvoMergeError(f"{what} needs per-example scores")
    m = np.asarray(examples, dtype=float)
    if m.ndim != 2 or m.shape[0] != n:
        raise EvoMergeError(f"{what}: per-example scores of shape {m.shape}, expected ({n}, examples)")
    return np.clip(m, 0.0, None)


def shared_fitness(examples: np.ndarray) -> np.ndarray:
    """sum_j s_ij / (sum_k s_kj): each example's unit of fitness split among those who earn it."""
    m = np.clip(np.asarray(examples, dtype=float), 0.0, None)
    return (m / (m.sum(axis=0, keepdims=True) + EPS)).sum(axis=1)


def attraction(examples: np.ndarray, first: int) -> np.ndarray:
    """Pull of every individual on ``first``: the shared value of examples it beats ``first`` on."""
    m = np.clip(np.asarray(examples, dtype=float), 0.0, None)
    value = 1.0 / (m.sum(axis=0) + EPS)
    return (np.clip(m - m[first], 0.0, None) * value).sum(axis=1)


@SELECTORS.register("sharing")
def sharing(fitness: np.ndarray, k: int, rng: np.random.Generator, examples: np.ndarray | None = None,
            **_) -> list[int]:
    """The k highest shared fitnesses (ties broken by plain fitness, then index)."""
    shared = shared_fitness(_matrix(examples, len(fitness), "selection 'sharing'"))
    order = sorted(range(len(fitness)), key=lambda i: (-shared[i], -fitness[i], i))
    return order[:k]


@PARENT_SELECTORS.register("attraction")
def attraction_parents(fitness: np.ndarray, k: int, rng: np.random.Generator, examples: np.ndarray | None = None,
                       **_) -> list[int]:
    """First parent by shared fitness (roulette); each next one by its attraction to the first."""
    m = _matrix(examples, len(fitness), "parent selection 'attraction'")
    shared = shared_fitness(m)
    first = int(rng.choice(len(fitness), p=positive_weights(shared)))
    chosen = [first]
    while len(chosen) < k:
        pull = attraction(m, first)
        pull[chosen] = 0.0
        if pull.sum() <= 0:  # nobody beats the first anywhere: any other individual
            pull = np.ones(len(fitness))
            pull[chosen] = 0.0
        chosen.append(int(rng.choice(len(fitness), p=pull / pull.sum())))
    return chosen
