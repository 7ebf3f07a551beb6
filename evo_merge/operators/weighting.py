"""Turning fitness values into non-negative weights (roulette, fitness-proportional coefficients)."""

from __future__ import annotations

import numpy as np


def positive_weights(fitness: np.ndarray) -> np.ndarray:
    """Fitness shifted to be positive when any value is <= 0, normalised to sum 1.

    Equal fitness (or all zero) gives equal weights.
    """
    f = np.asarray(fitness, dtype=float)
    if f.min() <= 0:
        spread = f.max() - f.min()
        f = f - f.min() + (spread * 0.05 if spread > 0 else 1.0)
    total = f.sum()
    return f / total if total > 0 else np.full(len(f), 1.0 / len(f))
