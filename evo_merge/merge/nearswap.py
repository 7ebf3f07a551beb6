"""mergekit's ``nearswap``: take the other model's value where it is near the base's.

Per value, weight = clamp(t / max(|base - x|, 1e-6), 0, 1) and the result is
weight * x + (1 - weight) * base: values closer than ``t`` are swapped in whole, farther
ones only partly. Base required, one other model. Without a base (evolution) tensors[0]
plays the base and tensors[1] the other model; one tensor alone has the origin as base.
"""

from __future__ import annotations

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.merge.registry import merge_method
from evo_merge.merge.sparsify import Tensors, check_shapes


def base_and_other(name: str, tensors: Tensors, base: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The (base, other) pair of a two-model method whose base is required; base None: tensors[0]
    is the base when there are two tensors, the origin (None) when there is one."""
    check_shapes(name, tensors, base)
    if base is not None:
        if len(tensors) != 1:
            raise EvoMergeError(f"merge method {name!r} with a base needs exactly 1 other model, got {len(tensors)}")
        return base, tensors[0]
    return (tensors[0], tensors[1]) if len(tensors) == 2 else (None, tensors[0])


@merge_method("nearswap", min_parents=1, max_parents=2, space="weights", base="required")
def nearswap(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
             base: torch.Tensor | None = None, t: float) -> torch.Tensor:
    """mergekit's nearswap (``t`` required, as in mergekit); the per-model weights are not used."""
    a, b = base_and_other("nearswap", tensors, base)
    x = b.float()
    if a is None:
        w = (t / x.abs().clamp(min=1e-6)).clamp(0.0, 1.0)
        return (w * x).to(b.dtype)
    y = a.float()
    w = (t / (y - x).abs().clamp(min=1e-6)).clamp(0.0, 1.0)
    return (w * x + (1 - w) * y).to(b.dtype)
