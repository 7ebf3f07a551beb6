"""mergekit's ``arcee_fusion``: take the other model's values where they matter most.

importance = |x - base| * KL(softmax(x) || softmax(base)), the softmaxes along the last
dimension (KL per row, +1e-8 on both distributions); the values whose importance is at
least median + 1.5 * (q3 - q1) come from x, the rest from the base. Quantiles are the
sorted values at index int(q * (n - 1)), exact at every size (mergekit samples 10^6 values
of larger tensors at random). Base required, one other model; without a base (evolution)
tensors[0] plays the base and tensors[1] the other model, one tensor alone has the origin.
"""

from __future__ import annotations

import torch

from evo_merge.merge.nearswap import base_and_other
from evo_merge.merge.registry import merge_method
from evo_merge.merge.sparsify import Tensors


def importance(x: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    """|x - base| * KL(softmax(x) || softmax(base)) along the last dimension (float32)."""
    p = torch.softmax(x, dim=-1) + 1e-8
    if base is None:  # softmax of zeros is uniform
        q: torch.Tensor | float = 1.0 / x.shape[-1] + 1e-8
        diff = x.abs()
    else:
        q = torch.softmax(base, dim=-1) + 1e-8
        diff = (x - base).abs()
    kl = (p * torch.log(p / q)).sum(dim=-1, keepdim=True)
    return diff * kl


def _quantile(flat: torch.Tensor, q: float) -> torch.Tensor:
    return torch.kthvalue(flat, int(q * (flat.numel() - 1)) + 1).values


@merge_method("arcee_fusion", min_parents=1, max_parents=2, space="weights", base="required")
def arcee_fusion(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                 base: torch.Tensor | None = None) -> torch.Tensor:
    """mergekit's arcee_fusion (no parameters; the per-model weights are not used)."""
    a, b = base_and_other("arcee_fusion", tensors, base)
    if b.numel() == 0:
        return b.clone()
    x = b.float()
    y = None if a is None else a.float()
    score = importance(x, y)
    flat = score.reshape(-1)
    q1, median, q3 = (_quantile(flat, q) for q in (0.25, 0.5, 0.75))
    keep = score >= median + 1.5 * (q3 - q1)
    return torch.where(keep, x, 0.0 if y is None else y).to(b.dtype)
