"""SCE (mergekit's ``sce``): select, calculate, erase, on task vectors.

Select: with ``select_topk`` < 1, keep only the positions where the task vectors vary most
across models (the top ``select_topk`` of the positions with nonzero variance). Calculate:
each model's coefficient is the mean square of its (selected) task vector, normalized to
sum 1 (a sum under 1e-6: equal coefficients). Erase: TIES' sign election on the plain sum;
the agreeing values are averaged with those coefficients. The per-model weights are not
used (mergekit's sce has none).
"""

from __future__ import annotations

import torch

from evo_merge.merge.registry import merge_method
from evo_merge.merge.sparsify import Tensors, _largest, check_shapes


def _select(stacked: torch.Tensor, select_topk: float) -> torch.Tensor | None:
    """Mask of the int(nonzero * select_topk) positions of largest variance across models (None: all)."""
    if select_topk >= 1:
        return None
    var = torch.var(stacked, dim=0, unbiased=False).reshape(-1)
    k = int(int(torch.count_nonzero(var)) * select_topk) if select_topk > 0 else 0
    return _largest(var, k).view(stacked.shape[1:])


@merge_method("sce", base="required")
def sce(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
        base: torch.Tensor | None = None, int8_mask: bool = False, select_topk: float = 1.0) -> torch.Tensor:
    """SCE merge of the task vectors (the base is the origin). ``int8_mask``: no effect on values."""
    check_shapes("sce", tensors)
    stacked = torch.stack([x.float() for x in tensors])
    mask = _select(stacked, select_topk)
    if mask is not None:
        stacked.mul_(mask)
    elected = torch.where(stacked.sum(0) >= 0, 1.0, -1.0)
    agree = torch.sign(stacked) == elected
    coef = stacked.square().reshape(len(tensors), -1).mean(dim=1)
    total = float(coef.sum())
    coef = torch.full_like(coef, 1.0 / len(tensors)) if abs(total) < 1e-6 else coef / total
    erased = torch.where(agree, coef.view(-1, *([1] * (stacked.dim() - 1))), 0.0)
    merged = (stacked * erased).sum(0) / erased.sum(0).clamp(min=1e-6)
    return merged.to(tensors[0].dtype)
