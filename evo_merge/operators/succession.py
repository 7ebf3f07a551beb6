"""Succession: a particle-swarm step (GENOME+, Model Swarms) on genomes' flat buffers.

    v' = (r0*phi_i*v + r1*phi_c*(p - x) + r2*phi_s*(g - x) - r3*phi_r*(w - x)) / C
    x' = x + step * v'

with p the individual's own best, g the global best, w the global worst, r fresh
uniform draws from the step's seed, and C = r0*phi_i + r1*phi_c + r2*phi_s + r3*phi_r.
A recipe's parents are [x, p, g, w]; the step size decays by ``step_decay`` per generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from pydantic import Field

from evo_merge.genome import Genome
from evo_merge.operators.base import Operator, PlanContext, Strict, register
from evo_merge.operators.recipe import Built, Fetch, FetchVelocity, Recipe

ROLES = ("moves", "own best", "global best", "repel")


class SuccessionConfig(Strict):
    enabled: bool = False
    rate: float = Field(1.0, ge=0, le=1, description="probability that an individual takes a swarm step")
    phi_inertia: float = 0.2
    phi_cognitive: float = 0.2
    phi_social: float = 0.2
    phi_repel: float = 0.1
    step: float = Field(0.5, gt=0)
    step_decay: float = Field(0.95, gt=0, le=1)


@dataclass(frozen=True)
class SwarmWeights:
    inertia: float = 0.2
    cognitive: float = 0.2
    social: float = 0.2
    repel: float = 0.1


class Phi(Strict):
    inertia: float
    cognitive: float
    social: float
    repel: float


class SuccessionParams(Strict):
    r: list[float] = Field(min_length=4, max_length=4)
    phi: Phi
    step: float


def swarm_randoms(seed: int) -> list[float]:
    """The four uniform factors r0..r3 of one step, from its recorded seed."""
    return [float(r) for r in np.random.default_rng(seed).random(4)]


def swarm_step(x: Genome, v: Genome | None, p: Genome, g: Genome, w: Genome, *,
               r: list[float], phi: SwarmWeights, step: float) -> tuple[Genome, Genome]:
    """One swarm move of ``x`` with velocity ``v`` (None = zero); returns (x', v')."""
    xf = x.flat.float()
    c = [r[0] * phi.inertia, r[1] * phi.cognitive, r[2] * phi.social, r[3] * phi.repel]
    norm = sum(c) or 1.0
    vel = torch.zeros_like(xf) if v is None else v.flat.float() * c[0]
    vel.add_(p.flat.float() - xf, alpha=c[1])
    vel.add_(g.flat.float() - xf, alpha=c[2])
    vel.sub_(w.flat.float() - xf, alpha=c[3])
    vel.div_(norm)
    return x.with_flat(xf + step * vel), x.with_flat(vel)


def plan_succession(cfg: SuccessionConfig, ctx: PlanContext, pool: Sequence[int], generation: int,
                    fitness: Callable[[int], float], own_best: Callable[[int], int]) -> list[Recipe]:
    """A swarm step for each individual of ``pool`` with probability ``rate``."""
    best = max(pool, key=fitness)
    worst = min(pool, key=fitness)
    step = cfg.step * cfg.step_decay ** (generation - 1)
    phi = {"inertia": cfg.phi_inertia, "cognitive": cfg.phi_cognitive, "social": cfg.phi_social,
           "repel": cfg.phi_repel}
    recipes = []
    for ind in pool:
        if ctx.rng.random() < cfg.rate:
            seed = ctx.seed()
            params = {"r": swarm_randoms(seed), "phi": phi, "step": step}
            recipes.append(Recipe("succession", [ind, own_best(ind), best, worst], params=params, seed=seed))
    return recipes


@register
class Succession(Operator):
    name = "succession"
    Params = SuccessionParams
    color = "#e8dcf5"

    @classmethod
    def build(cls, recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
        x_id, p_id, g_id, w_id = recipe.parents
        p = cls.params(recipe)
        x, vel = swarm_step(fetch(x_id), fetch_velocity(x_id), fetch(p_id), fetch(g_id), fetch(w_id),
                            r=p.r, phi=SwarmWeights(**p.phi.model_dump()), step=p.step)
        return Built(x, vel)

    @classmethod
    def roles(cls, recipe: Recipe) -> list[str]:
        return [ROLES[i] if i < len(ROLES) else "" for i in range(len(recipe.parents))]

    @classmethod
    def own_best_sources(cls, recipe: Recipe) -> list[int]:
        """A swarm step continues the moving individual's own trajectory."""
        return list(recipe.parents[:1])
