"""Built-in merge methods, with mergekit's parameter names and semantics.

Inputs are task vectors (deltas from the base, which is zero in this space) or LoRA
factors; SLERP interpolates whatever it is given. Every method computes in float32 and
returns the dtype of its first input. The task-arithmetic family (linear, task
arithmetic, TIES, DARE, breadcrumbs) is one function of (sparsification, consensus),
``task_arithmetic_family`` in ``sparsify.py``; each method here names its pair.
Sparsification is per tensor, as in mergekit, except where a method is elementwise.
"""

from __future__ import annotations

import math

import torch

from evo_merge.merge.registry import Density, Gamma, Positive, merge_method
from evo_merge.merge.sparsify import Tensors, check_shapes, task_arithmetic_family, weighted_sum

_DOT_THRESHOLD = 0.9995  # |cos| above this: SLERP falls back to lerp (mergekit's value)


@merge_method("linear", elementwise=True, linear=True)
def linear(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
           normalize: bool = True) -> torch.Tensor:
    """Weighted sum sum_i w_i x_i, divided by sum_i w_i when ``normalize``."""
    return task_arithmetic_family("linear", tensors, weights, sparsification=None, consensus="sum",
                                  normalize=normalize)


@merge_method("task_arithmetic", elementwise=True, linear=True)
def task_arithmetic(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                    lambda_: float = 1.0, normalize: bool = False) -> torch.Tensor:
    """lambda * sum_i w_i x_i (divided by sum_i w_i when ``normalize``)."""
    return task_arithmetic_family("task_arithmetic", tensors, weights, sparsification=None, consensus="sum",
                                  lambda_=lambda_, normalize=normalize)


@merge_method("ties")
def ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
         density: Density = 1.0, lambda_: float = 1.0, normalize: bool = True) -> torch.Tensor:
    """TIES: keep each task vector's top ``density`` by magnitude, elect signs, disjoint mean."""
    return task_arithmetic_family("ties", tensors, weights, sparsification="magnitude", consensus="ties",
                                  density=density, lambda_=lambda_, normalize=normalize)


@merge_method("dare_ties", elementwise=True, uses_random=True)
def dare_ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
              density: Density = 1.0, lambda_: float = 1.0, normalize: bool = True) -> torch.Tensor:
    """DARE (random drop with probability 1 - density, rescale by 1/density), then TIES sign
    election and disjoint mean. Every step is per value, so it runs on whole flat buffers."""
    return task_arithmetic_family("dare_ties", tensors, weights, sparsification="random", consensus="ties",
                                  density=density, lambda_=lambda_, normalize=normalize, generator=generator)


@merge_method("dare_linear", elementwise=True, uses_random=True)
def dare_linear(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                density: Density = 1.0, lambda_: float = 1.0, normalize: bool = False) -> torch.Tensor:
    """DARE drop and rescale of each task vector, then lambda * weighted sum."""
    return task_arithmetic_family("dare_linear", tensors, weights, sparsification="random", consensus="sum",
                                  density=density, lambda_=lambda_, normalize=normalize, generator=generator)


@merge_method("breadcrumbs")
def breadcrumbs(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                density: Density = 0.9, gamma: Gamma = 0.01, lambda_: float = 1.0,
                normalize: bool = False) -> torch.Tensor:
    """Model Breadcrumbs: drop the largest ``gamma`` and the smallest values of each task vector
    so that ``density`` remains, then lambda * weighted sum."""
    return task_arithmetic_family("breadcrumbs", tensors, weights, sparsification="breadcrumbs", consensus="sum",
                                  density=density, gamma=gamma, lambda_=lambda_, normalize=normalize)


@merge_method("breadcrumbs_ties")
def breadcrumbs_ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                     density: Density = 0.9, gamma: Gamma = 0.01, lambda_: float = 1.0,
                     normalize: bool = False) -> torch.Tensor:
    """Breadcrumbs trimming, then TIES sign election and disjoint mean."""
    return task_arithmetic_family("breadcrumbs_ties", tensors, weights, sparsification="breadcrumbs",
                                  consensus="ties", density=density, gamma=gamma, lambda_=lambda_,
                                  normalize=normalize)


@merge_method("slerp", min_parents=2, max_parents=2)
def slerp(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
          t: float = 0.5, epsilon: Positive = 1e-8) -> torch.Tensor:
    """Spherical interpolation from parent 0 (t=0) to parent 1 (t=1), angle taken from
    normalized copies (norms <= ``epsilon`` are not normalized); nearly colinear pairs
    (|cos| > 0.9995) use lerp. Weights are ignored: for fitness-proportional interpolation
    pass t = w1 / (w0 + w1)."""
    check_shapes("slerp", tensors)
    v0, v1 = (x.float() for x in tensors)
    n0, n1 = (torch.linalg.vector_norm(v, dtype=torch.float64) for v in (v0, v1))
    dot = (v0 * v1).sum(dtype=torch.float64)
    cos = float(dot / (torch.where(n0 > epsilon, n0, 1.0) * torch.where(n1 > epsilon, n1, 1.0)))
    if abs(cos) > _DOT_THRESHOLD:
        s0, s1 = 1.0 - t, t
    else:
        theta = math.acos(cos)
        s0 = math.sin(theta * (1.0 - t)) / math.sin(theta)
        s1 = math.sin(theta * t) / math.sin(theta)
    return (v0 * s0 + v1 * s1).to(tensors[0].dtype)


@merge_method("model_stock", min_parents=2)
def model_stock(tensors: Tensors, weights: torch.Tensor, *,
                generator: torch.Generator | None) -> torch.Tensor:
    """Model Stock: t = k*cos / (1 + (k-1)*cos) from the mean pairwise cosine of the k task
    vectors, result t * mean(x_i) (the base is zero). Weights are ignored. A negative mean
    cosine (where mergekit's t turns negative or divides by zero) is clamped to 0: the base."""
    check_shapes("model_stock", tensors)
    xs = [x.float().reshape(-1) for x in tensors]
    norms = [torch.linalg.vector_norm(x) for x in xs]
    cosines = [((xs[i] @ xs[j]) / (norms[i] * norms[j]).clamp(min=1e-6)).clamp(-1.0, 1.0)
               for i in range(len(xs)) for j in range(i + 1, len(xs))]
    cos = torch.stack(cosines).mean().clamp(min=0.0)
    k = len(xs)
    t = k * cos / (1 + (k - 1) * cos)
    mean = weighted_sum(tensors, torch.ones(k, device=xs[0].device)).div_(k)
    return (mean * t).to(tensors[0].dtype)
