"""Crossover: merge k parents with a registered merge method and per-parent coefficients.

GENOME's scheme: ``slots`` attempts per generation, each made with probability ``rate``;
parents by a registered parent rule, coefficients by a registered scheme (their fitness
normalised, random, or given), the method drawn from ``methods`` by weight. With
probability ``split_point`` an attempt is M2N2's split-point crossover instead
(``split_point.py``). ``merge`` is the same mechanics for a baseline merge (the uniform
merge of all members in the report).
"""

from __future__ import annotations

from statistics import fmean
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from evo_merge.genome import Genome
from evo_merge.merge import merge_genomes
from evo_merge.merge.mergekit_form import MERGEKIT_METHODS, mergekit_form  # evo-merge methods with a mergekit form
from evo_merge.operators.base import MergekitForm, Operator, PlanContext, Refs, Strict, register
from evo_merge.operators.coefficients import COEFFICIENTS
from evo_merge.operators.parents import choose_parents
from evo_merge.operators.recipe import Built, Fetch, FetchVelocity, Recipe
from evo_merge.operators.layerwise import layerwise_recipe
from evo_merge.operators.split_point import split_point_recipe

LoraMode = Literal["factors", "product"]


class MergeChoice(Strict):
    """One merge method the crossover may pick, with its relative probability and parameters."""

    method: str
    weight: float = Field(1.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)


class CrossoverConfig(Strict):
    rate: float = Field(0.8, ge=0, le=1)
    slots: int | None = Field(None, ge=0, description="crossover attempts per generation; default N/2")
    num_parents: int = Field(2, ge=2)
    parent_selection: str = "roulette"
    tournament_size: int = Field(3, ge=1)
    coefficients: Literal["fitness", "random", "given", "subset"] = Field(
        "fitness", description="fitness: the parents' fitness normalised (GENOME); random: uniform on the simplex; "
        "subset: the plain average of a random subset of the parents; given: the 'given' list")
    given: list[float] | None = None
    methods: list[MergeChoice] = Field(default_factory=lambda: [MergeChoice(method="ties", params={"density": 0.7}),
                                                                MergeChoice(method="linear")])
    split_point: float = Field(0.0, ge=0, le=1, description="probability that a crossover is M2N2's split-point "
                               "crossover (two parents) instead of a merge method")
    layerwise: float = Field(0.0, ge=0, le=1, description="probability that a crossover mixes the parents per "
                             "block of layers (each block its own random subset, weighted by the scheme)")
    layer_groups: int | None = Field(None, ge=1, description="layerwise: blocks of consecutive layers "
                                     "(default: one per layer)")

    @model_validator(mode="after")
    def _given_matches(self) -> "CrossoverConfig":
        if self.coefficients == "given":
            if not self.given or len(self.given) != self.num_parents:
                raise ValueError(f"coefficients 'given' needs a list of {self.num_parents} numbers in 'given'")
        if not self.methods:
            raise ValueError("methods must name at least one merge method")
        return self


class MergeParams(BaseModel):
    """A merge recipe's parameters: the method's own (checked by the method) and the LoRA mode."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    lora_mode: LoraMode = "factors"

    def method_params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# -- planning -------------------------------------------------------------------------------------
def plan_crossovers(cfg: CrossoverConfig, ctx: PlanContext, fitness: np.ndarray, population: Sequence[int],
                    examples: np.ndarray | None) -> list[Recipe]:
    """Crossover slots, each taken with probability ``rate``."""
    recipes = []
    for _ in range(cfg.slots if cfg.slots is not None else max(1, len(population) // 2)):
        if ctx.rng.random() >= cfg.rate:
            continue
        recipes.append(plan_crossover(cfg, ctx, fitness, population, examples))
    return recipes


def plan_crossover(cfg: CrossoverConfig, ctx: PlanContext, fitness: np.ndarray, population: Sequence[int],
                   examples: np.ndarray | None) -> Recipe:
    """One crossover: parents by the parent rule, coefficients by the scheme."""
    k = min(cfg.num_parents, len(population))  # (a population smaller than num_parents: all of it)
    idx = choose_parents(cfg.parent_selection, fitness, k, ctx.rng, tournament_size=cfg.tournament_size,
                         examples=examples)
    coeffs = COEFFICIENTS.get(cfg.coefficients)(fitness[idx], ctx.rng, given=cfg.given)
    return crossover_recipe(cfg, ctx, [population[i] for i in idx], coeffs)


def crossover_recipe(cfg: CrossoverConfig, ctx: PlanContext, parents: list[int], coefficients: list[float]) -> Recipe:
    """A merge of ``parents``: split-point with probability ``split_point``, else a method drawn by weight."""
    if cfg.split_point > 0 and ctx.rng.random() < cfg.split_point:
        return split_point_recipe(ctx, parents)
    if cfg.layerwise > 0 and ctx.rng.random() < cfg.layerwise:
        return layerwise_recipe(ctx, parents, coefficients, cfg.layer_groups)
    probs = np.array([m.weight for m in cfg.methods])
    choice = cfg.methods[int(ctx.rng.choice(len(cfg.methods), p=probs / probs.sum()))]
    params = dict(choice.params)
    if choice.method in ("slerp", "task_slerp"):
        params.setdefault("t", coefficients[1] / sum(coefficients))
    if ctx.lora_mode:
        params["lora_mode"] = ctx.lora_mode
    return Recipe("crossover", parents, choice.method, coefficients, params, ctx.seed())


def uniform_merge_recipe(ctx: PlanContext, members: list[int]) -> Recipe:
    """The plain average of the members (the report's baseline)."""
    params = {"lora_mode": ctx.lora_mode} if ctx.lora_mode else {}
    return Recipe("merge", list(members), "linear", [1.0] * len(members), params, ctx.seed())


# -- building -------------------------------------------------------------------------------------
def inherited_velocity(parents: Sequence[int], fetch_velocity: FetchVelocity, weights: Sequence[float]) -> Genome | None:
    """Offspring keep their parents' search direction: the coefficient-weighted parent velocities."""
    present = [(v, w) for v, w in zip((fetch_velocity(p) for p in parents), weights) if v is not None]
    if not present:
        return None
    acc = torch.zeros_like(present[0][0].flat, dtype=torch.float32)
    for v, w in present:
        acc.add_(v.flat.float(), alpha=w / sum(weights))
    return present[0][0].with_flat(acc)


@register
class Crossover(Operator):
    name = "crossover"
    Params = MergeParams
    color = "#d6e6fa"

    @classmethod
    def build(cls, recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
        p = cls.params(recipe)
        child = merge_genomes(recipe.method, [fetch(i) for i in recipe.parents], recipe.coefficients,
                              seed=recipe.seed, params=p.method_params(), lora_mode=p.lora_mode)
        return Built(child, inherited_velocity(recipe.parents, fetch_velocity, recipe.coefficients))

    @classmethod
    def roles(cls, recipe: Recipe) -> list[str]:
        coeffs = recipe.coefficients or []
        if len(coeffs) != len(recipe.parents):
            return [""] * len(recipe.parents)
        return [f"{c:.3f}" for c in coeffs]

    @classmethod
    def coefficients_text(cls, recipe: Recipe) -> str:
        coeffs = recipe.coefficients or []
        if coeffs and len(coeffs) == len(recipe.parents):
            return "[" + ", ".join(f"{c:.3f}" for c in coeffs) + "]"
        return super().coefficients_text(recipe)

    @classmethod
    def mergekit(cls, recipe: Recipe, parents: Sequence[Any], refs: Refs, dtype: str) -> MergekitForm:
        return merge_form(recipe, parents, refs, {k: v for k, v in (recipe.params or {}).items() if k != "lora_mode"})


@register
class Merge(Crossover):
    """A baseline merge (e.g. the uniform merge of all members): crossover's mechanics."""

    name = "merge"
    color = "#e6e6e6"


def group_role(values: list[float]) -> str:
    """An edge label for one parent's per-group coefficients."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    shown = "/".join(f"{v:.2f}" for v in values) if len(values) <= 3 else f"{min(values):.2f}..{max(values):.2f}"
    return f"mean {fmean(values):.3f}, per-group {shown}"


def merge_form(recipe: Recipe, parents: Sequence[Any], refs: Refs, params: dict[str, Any]) -> MergekitForm:
    """The mergekit config that redoes one merge of members with one coefficient per member."""
    if len(parents) != len(recipe.parents) or any(p.operator != "member" for p in parents):
        ops = sorted({p.operator for p in parents if p.operator != "member"})
        return MergekitForm(None, f"no mergekit config: parents are not members (history includes {', '.join(ops)})")
    if recipe.method not in MERGEKIT_METHODS:
        return MergekitForm(None, f"no mergekit config: merge method {recipe.method!r} has no mergekit counterpart")
    coeffs = list(recipe.coefficients or [1.0] * len(parents))
    if len(coeffs) != len(parents):
        return MergekitForm(None, f"no mergekit config: {len(coeffs)} coefficients for {len(parents)} parents")
    try:
        paths = [refs(p.name) for p in parents]
    except LookupError as exc:
        return MergekitForm(None, f"no mergekit config: member {exc.args[0]!r} is no longer in the population spec")
    from evo_merge.merge import get_merge_method

    resolved = get_merge_method(recipe.method).resolve_params(params)
    cfg, note = mergekit_form(recipe.method, resolved, paths, refs(None), coeffs)
    return MergekitForm(cfg, note)
