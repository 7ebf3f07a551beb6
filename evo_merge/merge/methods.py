"""Built-in merge methods, with mergekit's parameter names and semantics.

Inputs are task vectors (deltas from the base, which is zero in this space) or LoRA
factors; SLERP interpolates whatever it is given. Every method computes in float32 and
returns the dtype of its first input. Sparsification (TIES trim, DARE drop, breadcrumbs)
is per tensor, as in mergekit; ``density`` is the fraction of each task vector kept.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.merge.registry import merge_method

Tensors = Sequence[torch.Tensor]

_DOT_THRESHOLD = 0.9995  # |cos| above this: SLERP falls back to lerp (mergekit's value)


def _check_shapes(name: str, tensors: Tensors) -> None:
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise EvoMergeError(f"merge method {name!r}: parent {i} tensor has shape {list(t.shape)}, "
                                f"expected {list(shape)}")


def _check_density(name: str, density: float) -> None:
    if not 0.0 < density <= 1.0:
        raise EvoMergeError(f"merge method {name!r}: density must be in (0, 1], got {density}")


def _weight_total(name: str, weights: torch.Tensor) -> float:
    """Sum of weights for normalizing; zero raises."""
    total = float(weights.sum())
    if abs(total) < 1e-8:
        raise EvoMergeError(f"merge method {name!r}: weights sum to zero, cannot normalize "
                            f"(set normalize: false)")
    return total


def _weighted_sum(tensors: Tensors, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i x_i in float32, converting one input at a time."""
    out = tensors[0].float() * weights[0]
    for x, w in zip(tensors[1:], weights[1:]):
        out.addcmul_(x.float(), w)
    return out


def _finish(out: torch.Tensor, name: str, weights: torch.Tensor, normalize: bool,
            lambda_: float, like: torch.Tensor) -> torch.Tensor:
    """Divide by the weight sum (if ``normalize``), scale by ``lambda_``, cast to ``like``'s dtype."""
    if normalize:
        out = out.div_(_weight_total(name, weights))
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


def _keep_top(x: torch.Tensor, density: float) -> torch.Tensor:
    """x with all but its int(density*n) largest magnitudes zeroed (at least one kept)."""
    if density >= 1.0:
        return x
    mag = x.reshape(-1).abs()
    n_keep = max(1, int(density * mag.numel()))
    return torch.where(_smallest(mag, mag.numel() - n_keep).view(x.shape), 0.0, x)


def _trim_outliers(x: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
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


def _dare(x: torch.Tensor, density: float, generator: torch.Generator | None) -> torch.Tensor:
    """Drop each value with probability 1 - density, rescale the kept ones by 1/density."""
    if density >= 1.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device).lt_(density)
    return keep.mul_(x).div_(density)


def _ties(xs: list[torch.Tensor], weights: torch.Tensor, normalize: bool) -> torch.Tensor:
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


@merge_method("linear", elementwise=True, normalize=True)
def linear(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
           normalize: bool) -> torch.Tensor:
    """Weighted sum sum_i w_i x_i, divided by sum_i w_i when ``normalize``."""
    _check_shapes("linear", tensors)
    return _finish(_weighted_sum(tensors, weights), "linear", weights, normalize, 1.0, tensors[0])


@merge_method("task_arithmetic", elementwise=True, lambda_=1.0, normalize=False)
def task_arithmetic(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                    lambda_: float, normalize: bool) -> torch.Tensor:
    """lambda * sum_i w_i x_i (divided by sum_i w_i when ``normalize``)."""
    _check_shapes("task_arithmetic", tensors)
    out = _weighted_sum(tensors, weights)
    return _finish(out, "task_arithmetic", weights, normalize, lambda_, tensors[0])


@merge_method("ties", density=1.0, lambda_=1.0, normalize=True)
def ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
         density: float, lambda_: float, normalize: bool) -> torch.Tensor:
    """TIES: keep each task vector's top ``density`` by magnitude, elect signs, disjoint mean."""
    _check_shapes("ties", tensors)
    _check_density("ties", density)
    if normalize:
        _weight_total("ties", weights)
    out = _ties([_keep_top(x.float(), density) for x in tensors], weights, normalize)
    return _finish(out, "ties", weights, False, lambda_, tensors[0])


@merge_method("dare_ties", elementwise=True, uses_random=True, density=1.0, lambda_=1.0, normalize=True)
def dare_ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
              density: float, lambda_: float, normalize: bool) -> torch.Tensor:
    """DARE (random drop with probability 1 - density, rescale by 1/density), then TIES sign
    election and disjoint mean. Every step is per value, so it runs on whole flat buffers."""
    _check_shapes("dare_ties", tensors)
    _check_density("dare_ties", density)
    if normalize:
        _weight_total("dare_ties", weights)
    out = _ties([_dare(x.float(), density, generator) for x in tensors], weights, normalize)
    return _finish(out, "dare_ties", weights, False, lambda_, tensors[0])


@merge_method("dare_linear", elementwise=True, uses_random=True, density=1.0, lambda_=1.0,
              normalize=False)
def dare_linear(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                density: float, lambda_: float, normalize: bool) -> torch.Tensor:
    """DARE drop and rescale of each task vector, then lambda * weighted sum."""
    _check_shapes("dare_linear", tensors)
    _check_density("dare_linear", density)
    out = _weighted_sum([_dare(x.float(), density, generator) for x in tensors], weights)
    return _finish(out, "dare_linear", weights, normalize, lambda_, tensors[0])


def _breadcrumbs_inputs(name: str, tensors: Tensors, density: float, gamma: float) -> list[torch.Tensor]:
    _check_shapes(name, tensors)
    _check_density(name, density)
    if not 0.0 <= gamma < 1.0:
        raise EvoMergeError(f"merge method {name!r}: gamma must be in [0, 1), got {gamma}")
    return [_trim_outliers(x.float(), density, gamma) for x in tensors]


@merge_method("breadcrumbs", density=0.9, gamma=0.01, lambda_=1.0, normalize=False)
def breadcrumbs(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                density: float, gamma: float, lambda_: float, normalize: bool) -> torch.Tensor:
    """Model Breadcrumbs: drop the largest ``gamma`` and the smallest values of each task vector
    so that ``density`` remains, then lambda * weighted sum."""
    xs = _breadcrumbs_inputs("breadcrumbs", tensors, density, gamma)
    return _finish(_weighted_sum(xs, weights), "breadcrumbs", weights, normalize, lambda_, tensors[0])


@merge_method("breadcrumbs_ties", density=0.9, gamma=0.01, lambda_=1.0, normalize=False)
def breadcrumbs_ties(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                     density: float, gamma: float, lambda_: float, normalize: bool) -> torch.Tensor:
    """Breadcrumbs trimming, then TIES sign election and disjoint mean."""
    xs = _breadcrumbs_inputs("breadcrumbs_ties", tensors, density, gamma)
    if normalize:
        _weight_total("breadcrumbs_ties", weights)
    return _finish(_ties(xs, weights, normalize), "breadcrumbs_ties", weights, False, lambda_, tensors[0])


@merge_method("slerp", min_parents=2, max_parents=2, t=0.5, epsilon=1e-8)
def slerp(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
          t: float, epsilon: float) -> torch.Tensor:
    """Spherical interpolation from parent 0 (t=0) to parent 1 (t=1), angle taken from
    normalized copies (norms <= ``epsilon`` are not normalized); nearly colinear pairs
    (|cos| > 0.9995) use lerp. Weights are ignored: for fitness-proportional interpolation
    pass t = w1 / (w0 + w1)."""
    _check_shapes("slerp", tensors)
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
    _check_shapes("model_stock", tensors)
    xs = [x.float().reshape(-1) for x in tensors]
    norms = [torch.linalg.vector_norm(x) for x in xs]
    cosines = [((xs[i] @ xs[j]) / (norms[i] * norms[j]).clamp(min=1e-6)).clamp(-1.0, 1.0)
               for i in range(len(xs)) for j in range(i + 1, len(xs))]
    cos = torch.stack(cosines).mean().clamp(min=0.0)
    k = len(xs)
    t = k * cos / (1 + (k - 1) * cos)
    mean = _weighted_sum(tensors, torch.ones(k, device=xs[0].device)).div_(k)
    return (mean * t).to(tensors[0].dtype)
