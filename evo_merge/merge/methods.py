"""Built-in merge methods, with mergekit 0.1.5's names, parameters, defaults and meaning.

The task-arithmetic family (task arithmetic, TIES, DARE, breadcrumbs, DELLA) is one
function of (sparsification, consensus), ``task_arithmetic_family`` in ``sparsify.py``;
each method here names its pair. Those methods work on task vectors (space "delta") and
take mergekit's base-model policy "required": the base is the origin of their space, so
their ``base`` argument is not used. Every method computes in float32 and returns the
dtype of its first input. Sparsification is per tensor, as in mergekit, except where a
method is elementwise. Importing this module registers every built-in (the other modules
of this package hold the rest: ``della``, ``sce``, ``spherical``, ``multislerp``,
``nearswap``, ``arcee_fusion``, ``passthrough``).
"""

from __future__ import annotations

from typing import Any

import torch

# the other built-ins register when their modules are imported
from evo_merge.merge import (  # noqa: F401
    arcee_fusion,
    della,
    multislerp,
    nearswap,
    passthrough,
    sce,
    spherical,
)
from evo_merge.merge.registry import Densities, Gammas, merge_method
from evo_merge.merge.sparsify import (
    Rescale,
    Tensors,
    check_shapes,
    task_arithmetic_family,
    weight_total,
    weighted_sum,
)

Base = torch.Tensor | None


def _no_l1(params: dict[str, Any]) -> bool:
    """DARE is elementwise unless it rescales by each tensor's L1 norm (mergekit's rescale)."""
    return params["rescale"] is not True


@merge_method("linear", elementwise=True, linear=True, space="weights")
def linear(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
           normalize: bool = True) -> torch.Tensor:
    """mergekit's linear: sum_i w_i x_i, divided by sum_i w_i when ``normalize`` (a zero sum
    raises; mergekit would divide by it). All models are inputs; no base."""
    if normalize:
        weight_total("linear", weights)
    return task_arithmetic_family("linear", tensors, weights, sparsification=None, consensus="sum",
                                  normalize=normalize)


@merge_method("task_arithmetic", elementwise=True, linear=True, base="required")
def task_arithmetic(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None, base: Base = None,
                    lambda_: float = 1.0, normalize: bool = False, int8_mask: bool = False) -> torch.Tensor:
    """lambda * sum_i w_i x_i (divided by sum_i w_i when ``normalize``). ``int8_mask`` is
    mergekit's memory option: no effect on values."""
    return task_arithmetic_family("task_arithmetic", tensors, weights, sparsification=None, consensus="sum",
                                  lambda_=lambda_, normalize=normalize)


@merge_method("ties", base="required")
def ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None, base: Base = None,
         density: Densities = 1.0, lambda_: float = 1.0, normalize: bool = True,
         rescale: Rescale = False, int8_mask: bool = False) -> torch.Tensor:
    """TIES: keep each task vector's top ``density`` by magnitude, weight, elect signs, disjoint sum
    (divided by the agreeing weights when ``normalize``), times lambda."""
    return task_arithmetic_family("ties", tensors, weights, sparsification="magnitude", consensus="ties",
                                  density=density, rescale=rescale, lambda_=lambda_, normalize=normalize)


@merge_method("dare_ties", uses_random=True, base="required", elementwise_if=_no_l1)
def dare_ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None, base: Base = None,
              density: Densities = 1.0, lambda_: float = 1.0, normalize: bool = False,
              rescale: Rescale = True, int8_mask: bool = False) -> torch.Tensor:
    """DARE (keep each value with probability ``density``; rescale True: each task vector's L1
    norm restored, "inverse_density": kept values divided by density), then TIES' sign
    election and disjoint sum. Without L1 rescaling every step is per value (flat buffers)."""
    return task_arithmetic_family("dare_ties", tensors, weights, sparsification="random", consensus="ties",
                                  density=density, rescale=rescale, lambda_=lambda_, normalize=normalize,
                                  generator=generator)


@merge_method("dare_linear", uses_random=True, base="required", elementwise_if=_no_l1)
def dare_linear(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None, base: Base = None,
                density: Densities = 1.0, lambda_: float = 1.0, normalize: bool = False,
                rescale: Rescale = True, int8_mask: bool = False) -> torch.Tensor:
    """DARE drop and rescale of each task vector, then lambda * weighted sum."""
    return task_arithmetic_family("dare_linear", tensors, weights, sparsification="random", consensus="sum",
                                  density=density, rescale=rescale, lambda_=lambda_, normalize=normalize,
                                  generator=generator)


@merge_method("breadcrumbs", base="required")
def breadcrumbs(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None, base: Base = None,
                density: Densities = 1.0, gamma: Gammas = 0.01, lambda_: float = 1.0,
                normalize: bool = False, rescale: Rescale = False, int8_mask: bool = False) -> torch.Tensor:
    """Model Breadcrumbs: drop the largest ``gamma`` and the smallest values of each task vector
    so that ``density`` remains (density 1, the default: nothing dropped), then lambda * weighted sum."""
    return task_arithmetic_family("breadcrumbs", tensors, weights, sparsification="breadcrumbs", consensus="sum",
                                  density=density, gamma=gamma, rescale=rescale, lambda_=lambda_,
                                  normalize=normalize)


@merge_method("breadcrumbs_ties", base="required")
def breadcrumbs_ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None, base: Base = None,
                     density: Densities = 1.0, gamma: Gammas = 0.01,
                     lambda_: float = 1.0, normalize: bool = False, rescale: Rescale = False,
                     int8_mask: bool = False) -> torch.Tensor:
    """Breadcrumbs trimming, then TIES sign election and disjoint sum."""
    return task_arithmetic_family("breadcrumbs_ties", tensors, weights, sparsification="breadcrumbs",
                                  consensus="ties", density=density, gamma=gamma, rescale=rescale,
                                  lambda_=lambda_, normalize=normalize)


@merge_method("model_stock", min_parents=2, base="required")
def model_stock(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                base: Base = None) -> torch.Tensor:
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
