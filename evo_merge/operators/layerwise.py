"""Layer-wise crossover: blocks of consecutive layers, each with its own mix of the parents.

A k-point crossover along the depth of the model: the layers are cut into contiguous
blocks at random points (one to ``layer_groups - 1`` cuts, default up to one per layer),
and every block gets a random non-empty subset of the parents, weighted by the
crossover's coefficient scheme restricted to it (fitness-proportional, random or
uniform). So a child can take the lower layers of one parent and the upper layers of
others, with contiguous blocks kept whole. It is recorded as a per-group ``composition``
(``composition.py``): built, replayed and drawn like any per-group merge.
"""

from __future__ import annotations

import numpy as np

from evo_merge.merge.groups import tensor_groups
from evo_merge.operators.base import PlanContext
from evo_merge.operators.coefficients import subset_mask
from evo_merge.operators.recipe import Recipe
from evo_merge.operators.split_point import layer_count


def layerwise_recipe(ctx: PlanContext, parents: list[int], weights: list[float], layer_groups: int | None) -> Recipe:
    """``weights``: the scheme's coefficients of the parents (renormalised within each block's subset)."""
    n_layers = layer_count(ctx.names)
    max_blocks = min(layer_groups or n_layers, n_layers)
    n_cuts = int(ctx.rng.integers(1, max_blocks)) if max_blocks > 1 else 0
    cuts = sorted(int(c) for c in ctx.rng.choice(np.arange(1, n_layers), n_cuts, replace=False)) if n_cuts else []
    spec = {"granularity": "cuts", "cuts": cuts}
    labels = list(tensor_groups(ctx.names, **spec).labels)
    w = np.clip(np.asarray(weights, dtype=float), 1e-12, None)
    coefficients: list[float] = []
    for _ in labels:
        keep = subset_mask(len(parents), ctx.rng) * w
        coefficients += [float(x) for x in keep / keep.sum()]
    params = {"groups": spec, "group_labels": labels, "normalize": False, "origin": "layerwise"}
    if ctx.lora_mode:
        params["lora_mode"] = ctx.lora_mode
    return Recipe("composition", list(parents), "linear", coefficients, params, ctx.seed())
