"""The building blocks of the task-arithmetic family (mergekit's generalized task arithmetic).

Sparsification keeps part of each task vector: ``magnitude`` (TIES: the top ``density``
by magnitude), ``random`` (DARE: a seeded random drop, kept values rescaled by
1/density) or ``breadcrumbs`` (drop the largest ``gamma`` and the smallest values).
Consensus combines them: ``sum`` (a weighted sum) or ``ties`` (sign election and the
disjoint mean). Every step computes in float32; thresholds are exact and deterministic.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

from evo_merge.errors import EvoMergeError

Tensors = Sequence[torch.Tensor]
Sparsification = Literal["magnitude", "random", "breadcrumbs"] | None
Consensus = Literal["sum", "ties"]


def check_shapes(name: str, tensors: Tensors) -> None:
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise EvoMergeError(f"merge method {name!r}: parent {i} tensor has shape {list(t.shape)}, "
                                f"expected {list(shape)}")


def weight_total(name: str, weights: torch.Tensor) -> float:
    """Sum of weights for normalizing; zero raises."""
    total = float(weights.sum())
    if abs(total) < 1e-8:
        raise EvoMergeError(f"merge method {name!r}: weights sum to zero, cannot normalize "
                            f"(set normalize: false)")
    return total


def weighted_sum(tensors: Tensors, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i x_i in float32, converting one input at a time."""
    out = tensors[0].float() * weights[0]
    for x, w in zip(tensors[1:], weights[1:]):
        out.addcmul_(x.float(), w)
    return out


def finish(out: torch.Tensor, name: str, weights: torch.Tensor, normalize: bool,
            lambda_: float, like: torch.Tensor) -> torch.Tensor:
    """Divide by the weight sum (if ``normalize``), scale by ``lambda_``, cast to ``like``'s dtype."""
    if normalize:
        out = out.div_(weight_total(name, weights))
    if lambda_ != 1.0:
        out = out.mul_(lambda_)
    return out.to(like.dtype)


_EXACT_KTH_LIMIT = 1 << 21  # below this many values, kthvalue on the whole tensor is cheap
_KTH_SAMPLE = 1 << 16


def _kth_smallest(mag: torch.Tensor, m: int) -> torch.Tensor:
    """The exact m-th smallest value (1-based) of 1-D ``mag``.

    For large tensors a fixed-seed sample brackets the answer, and kthvalue runs only on
    the values inside the bracket (a few per cent of the tensor); if the bracket misses,
    the whole tensor is used. Either way the result is exact and deterministic."""
    n = mag.numel()
    if n <= _EXACT_KTH_LIMIT:
        return torch.kthvalue(mag, m).values
    gen = torch.Generator(device=mag.device).manual_seed(0)
    sample = mag[torch.randint(n, (_KTH_SAMPLE,), generator=gen, device=mag.device)]
    q, margin = m / n, 8.0 / math.sqrt(_KTH_SAMPLE)
    k_lo, k_hi = math.floor((q - margin) * _KTH_SAMPLE), math.ceil((q + margin) * _KTH_SAMPLE)
    lo = torch.kthvalue(sample, k_lo).values if k_lo >= 1 else mag.min()
    hi = torch.kthvalue(sample, k_hi).values if k_hi <= _KTH_SAMPLE else mag.max()
    below = int((mag < lo).sum())
    band = mag[(mag >= lo) & (mag <= hi)]
    if 1 <= m - below <= band.numel():
        return torch.kthvalue(band, m - below).values
    return torch.kthvalue(mag, m).values


def _smallest(mag: torch.Tensor, m: int) -> torch.Tensor:
    """Mask of the ``m`` smallest values of 1-D ``mag`` (ties: lower index first).

    Threshold by an exact k-th value plus, only when values tie at the threshold, a
    cumulative count over the ties: deterministic on every device and O(n)."""
    if m <= 0:
        return torch.zeros_like(mag, dtype=torch.bool)
    if m >= mag.numel():
        return torch.ones_like(mag, dtype=torch.bool)
    threshold = _kth_smallest(mag, m)
    below = mag < threshold
    at = mag == threshold
    room = m - int(below.sum())
    if int(at.sum()) == room:
        return below | at
    return below | (at & (at.cumsum(0) <= room))


def keep_top(x: torch.Tensor, density: float) -> torch.Tensor:
    """x with all but its int(density*n) largest magnitudes zeroed (at least one kept)."""
    if density >= 1.0:
        return x
    mag = x.reshape(-1).abs()
    n_keep = max(1, int(density * mag.numel()))
    return torch.where(_smallest(mag, mag.numel() - n_keep).view(x.shape), 0.0, x)


def trim_outliers(x: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    """Breadcrumbs: drop the largest ``gamma`` fraction, then the smallest, keeping ``density``."""
    if density >= 1.0:
        return x
    mag = x.reshape(-1).abs()
    n = mag.numel()
    n_keep = max(1, int(density * n))
    n_top = int(gamma * n)
    n_bot = n - n_keep - n_top
    if n_bot < 0:  # too few left: remove fewer outliers to hit the density
        n_top, n_bot = n_top + n_bot, 0
    keep = _smallest(mag, n - n_top) & ~_smallest(mag, n_bot)
    return torch.where(keep.view(x.shape), x, 0.0)


def dare(x: torch.Tensor, density: float, generator: torch.Generator | None) -> torch.Tensor:
    """Drop each value with probability 1 - density, rescale the kept ones by 1/density."""
    if density >= 1.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device).lt_(density)
    return keep.mul_(x).div_(density)


def ties_consensus(xs: list[torch.Tensor], weights: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Sign election (sign of sum_i w_i x_i, ties to +) and disjoint (weighted) mean."""
    stacked = torch.stack(xs)
    w = weights.view(-1, *([1] * (stacked.dim() - 1)))
    weighted = stacked * w
    elected = torch.where(weighted.sum(0) >= 0, 1.0, -1.0)
    agree = (weighted * elected) > 0
    mixed = torch.where(agree, weighted, 0.0).sum(0)
    if normalize:
        divisor = torch.where(agree, w, 0.0).sum(0)
        mixed = mixed / torch.where(divisor == 0, 1.0, divisor)
    return mixed


def sparsify(x: torch.Tensor, how: Sparsification, density: float, gamma: float,
             generator: torch.Generator | None) -> torch.Tensor:
    """One task vector (float32) with part of it dropped, as ``how`` says (None: all kept)."""
    if how is None:
        return x
    if how == "magnitude":
        return keep_top(x, density)
    if how == "random":
        return dare(x, density, generator)
    return trim_outliers(x, density, gamma)


def task_arithmetic_family(name: str, tensors: Tensors, weights: torch.Tensor, *, sparsification: Sparsification,
                           consensus: Consensus, density: float = 1.0, gamma: float = 0.0, lambda_: float = 1.0,
                           normalize: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """lambda * combine_i(w_i * sparsify(x_i)): every method of the family is one call of this."""
    check_shapes(name, tensors)
    xs = list(tensors) if sparsification is None else \
        [sparsify(x.float(), sparsification, density, gamma, generator) for x in tensors]
    if consensus == "sum":
        return finish(weighted_sum(xs, weights), name, weights, normalize, lambda_, tensors[0])
    if normalize:
        weight_total(name, weights)
    return finish(ties_consensus(xs, weights, normalize), name, weights, False, lambda_, tensors[0])
