"""Mutation: a seeded perturbation of one parent.

GENOME's scheme: each individual spawns a mutant with probability ``rate``. ``mode:
gaussian`` perturbs each weight with probability ``weight_rate`` by N(0, sigma^2), sigma
relative to the RMS of the tensor the weight belongs to (``sigma_mode: relative``, the
default; GENOME's is ``absolute``). ``mode: svd`` scales the singular values of every
module's update by exp(sigma * N(0, 1)) (``svd_mutation.py``).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field

from evo_merge.genome import Genome
from evo_merge.operators.base import Operator, PlanContext, Strict, register
from evo_merge.operators.recipe import Built, Fetch, FetchVelocity, Recipe


class MutationParams(Strict):
    mode: Literal["gaussian", "svd", "member"] = "gaussian"
    weight_rate: float = Field(0.01, gt=0, le=1, description="gaussian: probability that a weight is perturbed")
    sigma: float = Field(0.01, ge=0)
    sigma_mode: Literal["absolute", "relative"] = "absolute"


class MutationConfig(MutationParams):
    rate: float = Field(0.15, ge=0, le=1, description="probability that an individual spawns a mutant")
    mode: Literal["gaussian", "svd", "member"] = Field(
        "gaussian", description="gaussian: noise on the weights; svd: singular values of each update scaled; "
        "member: one member's update added or removed (N(0, sigma) of it) in a random block of layers")
    weight_rate: float = Field(0.1, gt=0, le=1, description="gaussian: probability that a weight is perturbed")
    sigma: float = Field(0.1, ge=0, description="gaussian: noise scale; svd: log-scale of the singular values' factors")
    sigma_mode: Literal["absolute", "relative"] = Field("relative", description="gaussian: sigma as is, or times "
                                                         "each tensor's RMS")

    def params(self, boost: float = 1.0) -> dict:
        """What a mutation recipe stores; ``boost`` scales sigma (the stall rule's larger steps)."""
        return MutationParams(mode=self.mode, weight_rate=self.weight_rate, sigma=self.sigma * boost,
                              sigma_mode=self.sigma_mode).model_dump()


def mutate(genome: Genome, *, seed: int, mode: str = "gaussian", weight_rate: float = 0.01, sigma: float = 0.01,
           sigma_mode: str = "absolute") -> Genome:
    """A mutant of ``genome``; the same seed gives the same mutant. ``gaussian``: N(0, sigma^2)
    noise on each weight with probability ``weight_rate``; ``svd``: see ``svd_mutation.py``."""
    if mode == "svd":
        from evo_merge.operators.svd_mutation import svd_mutate

        return svd_mutate(genome, seed=seed, sigma=sigma)
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


def plan_mutants(cfg: MutationConfig, ctx: PlanContext, population: Sequence[int], boost: float = 1.0,
                 members: Sequence[int] = ()) -> list[Recipe]:
    """A mutant of each individual with probability ``rate``."""
    return [mutation_recipe(cfg, ctx, ind, boost, members) for ind in population if ctx.rng.random() < cfg.rate]


def mutation_recipe(cfg: MutationConfig, ctx: PlanContext, parent: int, boost: float = 1.0,
                    members: Sequence[int] = ()) -> Recipe:
    if cfg.mode == "member":
        from evo_merge.operators.member_nudge import nudge_recipe

        return nudge_recipe(ctx, parent, members, cfg.sigma * boost)
    return Recipe("mutation", [parent], params=cfg.params(boost), seed=ctx.seed())


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
