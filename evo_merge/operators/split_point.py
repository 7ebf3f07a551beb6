"""M2N2's split-point crossover: layers before a random split take mix w of parent A (1 - w
of B), the layers from the split on take 1 - w of A (w of B).

It is planned here and recorded as a two-group ``composition`` (``composition.py``), so it
is built, replayed and drawn like any per-group merge.
"""

from __future__ import annotations

from evo_merge.merge.groups import layer_index, tensor_groups
from evo_merge.operators.base import PlanContext
from evo_merge.operators.recipe import Recipe


def layer_count(names: tuple[str, ...]) -> int:
    """Decoder layers in a genome, from its tensor names."""
    layers = [layer_index(n) for n in names]
    return max((i for i in layers if i is not None), default=0) + 1


def split_point_recipe(ctx: PlanContext, parents: list[int]) -> Recipe:
    """A split layer drawn uniformly in [1, layers), a mix w uniform in [0, 1)."""
    n_layers = layer_count(ctx.names)
    split = int(ctx.rng.integers(1, n_layers)) if n_layers > 1 else 1
    w = float(ctx.rng.uniform(0.0, 1.0))
    groups = {"granularity": "split", "split_layer": split}
    labels = list(tensor_groups(ctx.names, **groups).labels)
    params = {"groups": groups, "group_labels": labels, "normalize": False, "origin": "split_point"}
    if ctx.lora_mode:
        params["lora_mode"] = ctx.lora_mode
    coefficients = [w, 1 - w, 1 - w, w][: 2 * len(labels)]
    return Recipe("composition", parents[:2], "linear", coefficients, params, ctx.seed())
