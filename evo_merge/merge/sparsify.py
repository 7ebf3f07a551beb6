"""The building blocks of the task-arithmetic family (mergekit's generalized task arithmetic).

Sparsification keeps part of each task vector: ``magnitude`` (TIES: the top ``density``
by magnitude), ``random`` (DARE: each value kept with probability ``density``),
``breadcrumbs`` (drop the largest ``gamma`` and the smallest values) or ``della``
(DELLA's MAGPRUNE: keep probabilities rising with the magnitude's rank within each row,
from density - epsilon to density + epsilon). ``rescale`` then restores the scale of what
is kept: True is mergekit's (the L1 norm of each task vector unchanged), "inverse_density"
divides the kept values by their keep probability (density; DELLA: the value's own),
False leaves them. Consensus combines the task vectors: ``sum`` (a weighted sum) or
``ties`` (sign election of the weighted vectors and the disjoint mean). Every step
computes in float32; magnitude thresholds are exact and deterministic.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Literal, Sequence

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.merge.registry import per_model

Tensors = Sequence[torch.Tensor]
Sparsification = Literal["magnitude", "random", "breadcrumbs", "della"] | None
Consensus = Literal["sum", "ties"]
Rescale = bool | Literal["inverse_density"]


def check_shapes(name: str, tensors: Tensors, base: torch.Tensor | None = None) -> None:
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise EvoMergeError(f"merge method {name!r}: parent {i} tensor has shape {list(t.shape)}, "
                                f"expected {list(shape)}")
    if base is not None and base.shape != shape:
        raise EvoMergeError(f"merge method {name!r}: base tensor has shape {list(base.shape)}, "
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
    """Divide by the weight sum (if ``normalize``; mergekit's rule: a sum within 1e-8 of zero
    divides by 1), scale by ``lambda_``, cast to ``like``'s dtype."""
    total = float(weights.sum())
    if normalize and abs(total) >= 1e-8 and total != 1.0:
        out = out.div_(total)
    if lambda_ != 1.0:
        out = out.mul_(lambda_)
    return out.to(like.dtype)


_EXACT_KTH_LIMIT = 1 << 17  # up to this many values, kthvalue on the whole tensor is cheap
_KTH_SAMPLE = 1 << 17  # at most; a 64th of the tensor, at least 4096


def _kth_smallest(mag: torch.Tensor, m: int) -> torch.Tensor:
    """The exact m-th smallest value (1-based) of 1-D ``mag``.

    For large tensors a fixed-seed sample brackets the answer (6 standard errors of the
    sample quantile each side, about 1 % of the values), and kthvalue runs only on the values
    inside the bracket; if the bracket misses, the whole tensor is used. Either way the result
    is exact and deterministic; the cost is a few passes over the tensor."""
    n = mag.numel()
    if n <= _EXACT_KTH_LIMIT:
        return torch.kthvalue(mag, m).values
    size = min(_KTH_SAMPLE, max(4096, n // 64))
    gen = torch.Generator(device=mag.device).manual_seed(0)
    sample = mag[torch.randint(n, (size,), generator=gen, device=mag.device)]
    q = m / n
    margin = 6.0 * math.sqrt(q * (1 - q) / size) + 2.0 / size
    k_lo, k_hi = math.floor((q - margin) * size), math.ceil((q + margin) * size)
    lo = torch.kthvalue(sample, k_lo).values if k_lo >= 1 else mag.min()
    hi = torch.kthvalue(sample, k_hi).values if k_hi <= size else mag.max()
    inside = mag >= lo
    below = n - int(torch.count_nonzero(inside))
    band = mag[inside.logical_and_(mag <= hi)]
    if 1 <= m - below <= band.numel():
        return torch.kthvalue(band, m - below).values
    return torch.kthvalue(mag, m).values


def _first(mask: torch.Tensor, room: int) -> torch.Tensor:
    """The first ``room`` True values of 1-D ``mask`` (lowest indices); ``mask`` is consumed."""
    chosen = torch.zeros_like(mask)
    chosen[mask.nonzero().view(-1)[:room]] = True
    return chosen


def _smallest(mag: torch.Tensor, m: int) -> torch.Tensor:
    """Mask of the ``m`` smallest values of 1-D ``mag``; values tied at the threshold are taken
    lowest index first, as a stable ascending sort (mergekit's breadcrumbs) takes them."""
    n = mag.numel()
    if m <= 0 or m >= n:
        return torch.full_like(mag, m >= n, dtype=torch.bool)
    threshold = _kth_smallest(mag, m)
    below = mag < threshold
    room = m - int(torch.count_nonzero(below))
    return below if room == 0 else below | _first(mag == threshold, room)


def _largest(mag: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Mask of the ``n_keep`` largest values of 1-D ``mag``; values tied at the threshold are
    taken lowest index first, as a stable descending sort (mergekit's TIES) takes them.

    Threshold by an exact k-th value; only when values tie at it, a cumulative count over
    the ties: deterministic on every device and O(n)."""
    n = mag.numel()
    if n_keep <= 0 or n_keep >= n:
        return torch.full_like(mag, n_keep >= n, dtype=torch.bool)
    threshold = _kth_smallest(mag, n - n_keep)  # the largest value left out
    keep = mag > threshold
    room = n_keep - int(torch.count_nonzero(keep))
    if room == 0:
        return keep
    if _TIE_ORDER.get() == "mergekit":  # mergekit's own choice among the tied values: its argsort
        keep.zero_()[torch.argsort(mag, descending=True)[:n_keep]] = True
        return keep
    return keep | _first(mag == threshold, room)


def _keep_top(mag: torch.Tensor, density: float) -> torch.Tensor:
    """Mask of the int(density*n) largest of 1-D ``mag`` (at least one kept, as mergekit)."""
    return _largest(mag, max(1, int(density * mag.numel())))


def _trim_outliers(mag: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    """Breadcrumbs mask: drop the largest int(gamma*n), then the smallest, keeping int(density*n);
    when both do not fit, fewer outliers are dropped (mergekit's rule)."""
    n = mag.numel()
    n_keep, n_top = int(density * n), int(gamma * n)
    n_bot = max(0, n - n_keep - n_top)
    if _TIE_ORDER.get() == "mergekit":  # mergekit's rule, tied values in its sort's order
        keep = torch.zeros_like(mag, dtype=torch.bool)
        keep[torch.sort(mag, descending=False).indices[n_bot:n_bot + n_keep]] = True
        return keep
    return _smallest(mag, n_bot + n_keep) & ~_smallest(mag, n_bot)


def _della_probs(x: torch.Tensor, density: float, epsilon: float) -> torch.Tensor:
    """MAGPRUNE keep probabilities: density - epsilon + 2 epsilon * (rank - 1) / (n - 1), ranks of
    |x| along dim 1 (a 1-D tensor is one row; ties by index). A row of one value gets ``density``."""
    if density + epsilon >= 1 or density - epsilon <= 0:
        raise EvoMergeError(f"della: epsilon {epsilon:g} must keep density {density:g} +/- epsilon in (0, 1)")
    rows = x.unsqueeze(0) if x.dim() < 2 else x
    n = rows.shape[1]
    if n < 2:
        return torch.full_like(x, density)
    ranks = torch.argsort(torch.argsort(rows.abs(), dim=1, stable=True), dim=1).float()
    return ranks.mul_(2 * epsilon / (n - 1)).add_(density - epsilon).view(x.shape)


def _rescale_l1(x: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """mergekit's RescaleNorm.l1: ``kept`` scaled so its L1 norm is that of ``x`` (norms < 1e-7: as is)."""
    before = float(x.abs().sum(dtype=torch.float64))
    after = float(kept.abs().sum(dtype=torch.float64))
    if before < 1e-7 or after < 1e-7:
        return kept
    return kept.mul_(before / after)


_SCRATCH: contextvars.ContextVar[bool] = contextvars.ContextVar("evo_merge_scratch_inputs", default=False)
_TIE_ORDER: contextvars.ContextVar[str] = contextvars.ContextVar("evo_merge_tie_order", default="index")


@contextlib.contextmanager
def tie_order(order: Literal["index", "mergekit"]):
    """Within this block, magnitude values tied at a TIES or breadcrumbs threshold are chosen in
    ``order``: ``index`` (default: lowest index first, a stable sort's order, O(n)) or
    ``mergekit`` (the order of torch's argsort / sort of the whole tensor, as mergekit 0.1.5
    chooses them: bit-for-bit parity, at a sort's cost where values tie)."""
    token = _TIE_ORDER.set(order)
    try:
        yield
    finally:
        _TIE_ORDER.reset(token)


@contextlib.contextmanager
def inputs_are_scratch():
    """Within this block the family may overwrite its float32 input tensors instead of allocating
    copies (the one-shot merge's read buffers are scratch; evolution's parents never are)."""
    token = _SCRATCH.set(True)
    try:
        yield
    finally:
        _SCRATCH.reset(token)


def sparsify(x: torch.Tensor, how: Sparsification, density: float, *, gamma: float = 0.0, epsilon: float = 0.0,
             rescale: Rescale = False, generator: torch.Generator | None = None,
             in_place: bool = False) -> torch.Tensor:
    """One task vector (float32) with part of it dropped, as ``how`` says (None or density >= 1:
    all kept, no rescaling, as in mergekit), the kept part rescaled as ``rescale`` says.
    ``in_place``: magnitude and breadcrumbs trimming zero ``x`` itself."""
    if how is None or density >= 1.0:
        return x
    if how == "random":
        keep = torch.rand(x.shape, generator=generator, device=x.device).lt_(density)
        kept = keep.mul_(x)
        divisor: float | torch.Tensor = density
    elif how == "della":
        probs = _della_probs(x, density, epsilon)
        kept = torch.rand(x.shape, generator=generator, device=x.device).lt_(probs).mul_(x)
        divisor = probs
    else:
        mag = x.reshape(-1).abs()
        mask = _keep_top(mag, density) if how == "magnitude" else _trim_outliers(mag, density, gamma)
        if in_place and rescale is not True:
            kept = x.mul_(mask.view(x.shape))  # (dropped negatives become -0.0, equal to 0.0)
        else:
            kept = torch.where(mask.view(x.shape), x, 0.0)
        divisor = density
    if rescale == "inverse_density":
        return kept.div_(divisor)
    return _rescale_l1(x, kept) if rescale else kept


def ties_consensus(xs: list[torch.Tensor], weights: torch.Tensor, normalize: bool,
                   scratch: bool = False) -> torch.Tensor:
    """mergekit's TIES: sign election on the weighted vectors (sign of sum_i w_i x_i, ties to +),
    the agreeing weighted values summed and, if ``normalize``, divided by their weights' sum.

    A few in-place passes: with e the elected sign, the agreeing part of d_i = w_i x_i is
    e * relu(e * d_i), so the sum is e * sum_i relu(e * d_i), the same terms in the same order
    as mergekit's masked sum. ``scratch``: ``xs`` may be overwritten (else weighted copies)."""
    ws = [float(w) for w in weights]
    ds = [x.mul_(w) for x, w in zip(xs, ws)] if scratch else [torch.mul(x, w) for x, w in zip(xs, ws)]
    elected = ds[0].clone()
    for d in ds[1:]:
        elected.add_(d)
    one = torch.ones((), device=elected.device)
    torch.where(elected >= 0, one, -one, out=elected)
    divisor = torch.zeros_like(elected) if normalize else None
    agrees = torch.empty_like(elected) if normalize else None
    for d, w in zip(ds, ws):
        d.mul_(elected).clamp_(min=0)
        if divisor is not None:
            divisor.add_(torch.sign(d, out=agrees), alpha=w)
    mixed = ds[0]
    for d in ds[1:]:
        mixed.add_(d)
    mixed.mul_(elected)
    if divisor is not None:
        mixed.div_(divisor.masked_fill_(divisor == 0, 1.0))
    return mixed


def task_arithmetic_family(name: str, tensors: Tensors, weights: torch.Tensor, *, sparsification: Sparsification,
                           consensus: Consensus, density: Any = 1.0, gamma: Any = 0.0, epsilon: Any = 0.0,
                           rescale: Rescale = False, lambda_: float = 1.0, normalize: bool = False,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """lambda * combine_i(w_i * sparsify(x_i)), mergekit's generalized task arithmetic: every method
    of the family is one call of this. density, gamma, epsilon: one value or one per model."""
    check_shapes(name, tensors)
    k = len(tensors)
    scratch = _SCRATCH.get() and all(x.dtype == torch.float32 for x in tensors)
    if sparsification is None:
        xs = list(tensors)
    else:
        ds, gs, es = per_model(density, k, "density"), per_model(gamma, k, "gamma"), per_model(epsilon, k, "epsilon")
        xs = [sparsify(x.float(), sparsification, d, gamma=g, epsilon=e, rescale=rescale, generator=generator,
                       in_place=scratch) for x, d, g, e in zip(tensors, ds, gs, es)]
    if consensus == "sum":
        return finish(weighted_sum(xs, weights), name, weights, normalize, lambda_, tensors[0])
    return finish(ties_consensus(xs, weights, normalize, scratch), name, weights, False, lambda_, tensors[0])
