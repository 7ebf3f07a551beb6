"""DELLA (mergekit's ``della`` and ``della_linear``): MAGPRUNE sparsification of each task
vector, then TIES consensus (``della``) or a weighted sum (``della_linear``).

MAGPRUNE keeps each value with a probability that rises with the rank of its magnitude
within its row (a 1-D tensor is one row), from density - epsilon (smallest) to
density + epsilon (largest): on average ``density`` of the values. mergekit's defaults:
epsilon 0.15, rescale True (each task vector's L1 norm restored); della normalizes,
della_linear does not. ``rescale: inverse_density`` divides each kept value by its own
keep probability (the DELLA paper's rule). density 1 (the default) keeps everything.
"""

from __future__ import annotations

import torch

from evo_merge.merge.registry import Densities, Epsilons, merge_method
from evo_merge.merge.sparsify import Rescale, Tensors, task_arithmetic_family

Base = torch.Tensor | None


@merge_method("della", uses_random=True, base="required")
def della(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None, base: Base = None,
          density: Densities = 1.0, epsilon: Epsilons = 0.15,
          lambda_: float = 1.0, normalize: bool = True, rescale: Rescale = True,
          int8_mask: bool = False) -> torch.Tensor:
    """DELLA-TIES: MAGPRUNE, then sign election and disjoint sum (divided by the agreeing
    weights when ``normalize``), times lambda."""
    return task_arithmetic_family("della", tensors, weights, sparsification="della", consensus="ties",
                                  density=density, epsilon=epsilon, rescale=rescale, lambda_=lambda_,
                                  normalize=normalize, generator=generator)


@merge_method("della_linear", uses_random=True, base="required")
def della_linear(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None, base: Base = None,
                 density: Densities = 1.0, epsilon: Epsilons = 0.15,
                 lambda_: float = 1.0, normalize: bool = False, rescale: Rescale = True,
                 int8_mask: bool = False) -> torch.Tensor:
    """MAGPRUNE, then lambda * weighted sum (divided by sum_i w_i when ``normalize``)."""
    return task_arithmetic_family("della_linear", tensors, weights, sparsification="della", consensus="sum",
                                  density=density, epsilon=epsilon, rescale=rescale, lambda_=lambda_,
                                  normalize=normalize, generator=generator)
