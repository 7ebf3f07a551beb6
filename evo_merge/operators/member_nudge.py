"""Member nudge (``mutation.mode: member``): a mutation in the space of compositions.

The child is its parent plus delta times one member's update, in one random block of
consecutive layers (delta ~ N(0, sigma): it adds some of that member there, or takes some
away). With exact LoRA merging (or full-weight deltas) every individual is a per-layer
weighted sum of the members, and this step moves one of those weights: a local search of
the composition that Gaussian noise on the weights cannot do. It is recorded as a
two-parent per-group ``composition`` (parent weight 1 everywhere, the member's weight
delta in the block and 0 elsewhere), so it is built, replayed and drawn like one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from evo_merge.merge.groups import tensor_groups
from evo_merge.operators.base import PlanContext
from evo_merge.operators.recipe import Recipe
from evo_merge.operators.split_point import layer_count


def nudge_recipe(ctx: PlanContext, parent: int, members: Sequence[int], sigma: float) -> Recipe:
    n_layers = layer_count(ctx.names)
    member = int(members[int(ctx.rng.integers(len(members)))])
    start, stop = sorted(int(x) for x in ctx.rng.choice(np.arange(n_layers + 1), 2, replace=False))
    delta = float(ctx.rng.normal(0.0, sigma))
    cuts = [c for c in (start, stop) if 0 < c < n_layers]
    spec = {"granularity": "cuts", "cuts": cuts}
    groups = tensor_groups(ctx.names, **spec)
    coefficients: list[float] = []
    for label in groups.labels:  # the group of layers [start, stop) gets the member's delta
        first = int(label.split()[1].split("-")[0])
        coefficients += [1.0, delta if start <= first < stop else 0.0]
    params = {"groups": spec, "group_labels": list(groups.labels), "normalize": False, "origin": "mutation"}
    if ctx.lora_mode:
        params["lora_mode"] = ctx.lora_mode
    return Recipe("composition", [parent, member], "linear", coefficients, params, ctx.seed())
