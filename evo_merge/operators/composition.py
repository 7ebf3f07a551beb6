"""Composition: a merge with one row of coefficients per tensor group (a coefficient search's
result, M2N2's split-point crossover). Coefficients are group-major:
``coefficients[g * k + i]`` weighs parent ``i`` in group ``g`` (groups: ``merge/groups.py``)."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import Field

from evo_merge.merge import merge_genomes_grouped
from evo_merge.merge.groups import groups_from_params
from evo_merge.operators.base import MergekitForm, Operator, Recipe, Refs, Strict, register
from evo_merge.operators.crossover import MergeParams, group_role, merge_form
from evo_merge.operators.recipe import Built, Fetch, FetchVelocity


class GroupSpec(Strict):
    """How tensors map to coefficient groups (a pure function of the tensor names)."""

    granularity: Literal["parent", "layers", "filters", "split", "cuts"] = "parent"
    layer_groups: int | None = Field(1, ge=1)
    filters: list[str] = Field(default_factory=list)
    split_layer: int = Field(1, ge=0)
    cuts: list[int] = Field(default_factory=list)


class CompositionParams(MergeParams):
    groups: GroupSpec | None = None
    group_labels: list[str] | None = None
    origin: Literal["search", "split_point", "layerwise", "mutation"] | None = Field(
        None, description="what planned it (a coefficient search, a crossover, a member-nudge mutation)")


def coefficient_rows(recipe: Recipe) -> list[list[float]] | None:
    """The coefficients as one row per group; None when absent or not a multiple of the parents."""
    k, coeffs = len(recipe.parents), recipe.coefficients
    if not coeffs or not k or len(coeffs) % k:
        return None
    return [list(coeffs[g * k:(g + 1) * k]) for g in range(len(coeffs) // k)]


@register
class Composition(Operator):
    name = "composition"
    Params = CompositionParams
    color = "#d3f0ee"

    @classmethod
    def build(cls, recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
        """The grouped merge; a composition starts a new search direction (no inherited velocity)."""
        p = cls.params(recipe)
        parents = [fetch(i) for i in recipe.parents]
        spec = {"groups": None if p.groups is None else p.groups.model_dump()}
        groups = groups_from_params(parents[0].layout.names, spec)
        weights = torch.tensor(recipe.coefficients, dtype=torch.float32).reshape(len(groups), len(parents))
        return Built(merge_genomes_grouped(recipe.method, parents, weights, groups.of, seed=recipe.seed,
                                           params=p.method_params(), lora_mode=p.lora_mode))

    @classmethod
    def roles(cls, recipe: Recipe) -> list[str]:
        rows = coefficient_rows(recipe)
        if rows is None:
            return [""] * len(recipe.parents)
        return [group_role([row[i] for row in rows]) for i in range(len(recipe.parents))]

    @classmethod
    def coefficients_text(cls, recipe: Recipe) -> str:
        rows = coefficient_rows(recipe)
        if rows is None:
            return super().coefficients_text(recipe)
        if len(rows) == 1:
            return "[" + ", ".join(f"{c:.3f}" for c in rows[0]) + "]"
        labels = (recipe.params or {}).get("group_labels")
        labels = labels if labels and len(labels) == len(rows) else [f"g{g}" for g in range(len(rows))]
        return " ".join(f"{lab}=[" + ", ".join(f"{c:.3f}" for c in row) + "]" for lab, row in zip(labels, rows))

    @classmethod
    def mergekit(cls, recipe: Recipe, parents: Sequence[Any], refs: Refs, dtype: str) -> MergekitForm:
        params = dict(recipe.params or {})
        groups = params.pop("groups", None)
        params.pop("group_labels", None)
        params.pop("lora_mode", None)
        params.pop("origin", None)
        if groups not in (None, {"granularity": "parent"}):
            granularity = groups.get("granularity") if isinstance(groups, dict) else groups
            return MergekitForm(None, f"no mergekit config: per-{granularity} coefficients "
                                      "(mergekit takes one weight per model)")
        return merge_form(recipe, parents, refs, params)
