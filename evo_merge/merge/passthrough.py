"""mergekit's ``passthrough``: the one input, unchanged or times ``scale``."""

from __future__ import annotations

import torch

from evo_merge.merge.registry import merge_method, per_model
from evo_merge.merge.sparsify import Tensors


@merge_method("passthrough", elementwise=True, linear=True, max_parents=1, space="weights")
def passthrough(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
                scale: float | None | list[float | None] = None) -> torch.Tensor:
    """The input tensor; with ``scale`` (per input, as in mergekit), the tensor times scale.
    The weight is not used."""
    value = scale[0] if isinstance(scale, list) and len(scale) == 1 else scale
    if value is None:
        return tensors[0]
    (factor,) = per_model(value, 1, "scale")
    return (tensors[0].float() * factor).to(tensors[0].dtype)
