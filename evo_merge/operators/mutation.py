"""Mutation: a seeded Gaussian perturbation of one parent, on the genome's device.

GENOME's scheme: each individual spawns a mutant with probability ``rate``; each weight
is perturbed with probability ``weight_rate`` by N(0, sigma^2); ``sigma_mode: relative``
scales sigma by the RMS of the tensor the weight belongs to.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field

from evo_merge.genome import Genome
from evo_merge.operators.base import Operator, PlanContext, Strict, register
from evo_merge.operators.recipe import Built, Fetch, FetchVelocity, Recipe


class MutationConfig(Strict):
    rate: float = Field(0.15, ge=0, le=1, description="probability that an individual spawns a mutant")
    weight_rate: float = Field(0.01, gt=0, le=1, description="probability that a weight is perturbed")
    sigma: float = Field(0.01, ge=0)
    sigma_mode: Literal["absolute", "relative"] = "absolute"

    def params(self) -> dict:
        return MutationParams(weight_rate=self.weight_rate, sigma=self.sigma, sigma_mode=self.sigma_mode).model_dump()


class MutationParams(Strict):
    weight_rate: float = Field(0.01, gt=0, le=1)
    sigma: float = Field(0.01, ge=0)
    sigma_mode: Literal["absolute", "relative"] = "absolute"


def mutate(genome: Genome, *, seed: int, weight_rate: float = 0.01, sigma: float = 0.01,
           sigma_mode: str = "absolute") -> Genome:
    """Add N(0, sigma^2) noise to each weight with probability ``weight_rate``; the same seed
    gives the same mutant."""
    flat = genome.flat
    gen = torch.Generator(device=flat.device).manual_seed(seed)
    n = flat.numel()
    mask = torch.rand(n, generator=gen, device=flat.device) < weight_rate
    noise = torch.randn(n, generator=gen, device=flat.device).mul_(sigma)
    if sigma_mode == "relative":
        noise.mul_(_per_tensor_rms(genome))
    return genome.with_flat(flat.to(torch.float32, copy=True).addcmul_(noise, mask))


def _per_tensor_rms(genome: Genome) -> torch.Tensor:
    """A flat vector holding, at each position, the RMS of the tensor it belongs to."""
    flat = genome.flat.float()
    sizes = torch.tensor([b - a for a, b in genome.layout.offsets()], device=flat.device)
    rms = torch.stack([flat[a:b].pow(2).mean().sqrt() for a, b in genome.layout.offsets()])
    return torch.repeat_interleave(rms, sizes)


def plan_mutants(cfg: MutationConfig, ctx: PlanContext, population: Sequence[int]) -> list[Recipe]:
    """A mutant of each individual with probability ``rate``."""
    return [mutation_recipe(cfg, ctx, ind) for ind in population if ctx.rng.random() < cfg.rate]


def mutation_recipe(cfg: MutationConfig, ctx: PlanContext, parent: int) -> Recipe:
    return Recipe("mutation", [parent], params=cfg.params(), seed=ctx.seed())


@register
class Mutation(Operator):
    name = "mutation"
    Params = MutationParams
    color = "#fde5c8"

    @classmethod
    def build(cls, recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
        """A mutated copy of the single parent; it keeps the parent's velocity."""
        p = cls.params(recipe)
        child = mutate(fetch(recipe.parents[0]), seed=recipe.seed, **p.model_dump())
        return Built(child, fetch_velocity(recipe.parents[0]))

    @classmethod
    def roles(cls, recipe: Recipe) -> list[str]:
        return ["mutate"] * len(recipe.parents)
