"""Recipes: how an offspring is made from its parents, as plain JSON-able data.

The engine plans recipes (all random choices drawn on the driver from the run's seeded
generator, the per-offspring seed included); whoever executes them (this process or a
Ray worker) builds the offspring with ``build``. A recipe plus its parents' weights
rebuilds the offspring exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from evo_merge.genome import Genome
from evo_merge.merge import merge_genomes, merge_genomes_grouped
from evo_merge.merge.groups import groups_from_params
from evo_merge.operators.mutation import mutate
from evo_merge.operators.succession import SwarmWeights, swarm_step
from evo_merge.registry import Registry


@dataclass
class Recipe:
    operator: str
    parents: list[int] = field(default_factory=list)
    method: str | None = None
    coefficients: list[float] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Built:
    genome: Genome
    velocity: Genome | None = None


Fetch = Callable[[int], Genome]
FetchVelocity = Callable[[int], Genome | None]
Builder = Callable[[Recipe, Fetch, FetchVelocity], Built]
BUILDERS: Registry[Builder] = Registry("operator")


def build(recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
    """Make the offspring a recipe describes; ``fetch`` returns an individual's genome by id."""
    return BUILDERS.get(recipe.operator)(recipe, fetch, fetch_velocity)


def _inherited_velocity(recipe: Recipe, fetch_velocity: FetchVelocity, weights: list[float]) -> Genome | None:
    """Offspring keep their parents' search direction: the coefficient-weighted parent velocities."""
    vels = [fetch_velocity(p) for p in recipe.parents]
    present = [(v, w) for v, w in zip(vels, weights) if v is not None]
    if not present:
        return None
    acc = torch.zeros_like(present[0][0].flat, dtype=torch.float32)
    for v, w in present:
        acc.add_(v.flat.float(), alpha=w / sum(weights))
    return present[0][0].with_flat(acc)


@BUILDERS.register("crossover")
def crossover(recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
    """Merge the parents with the recipe's method and coefficients."""
    params = dict(recipe.params)
    lora_mode = params.pop("lora_mode", "factors")
    child = merge_genomes(recipe.method, [fetch(p) for p in recipe.parents], recipe.coefficients,
                          seed=recipe.seed, params=params, lora_mode=lora_mode)
    return Built(child, _inherited_velocity(recipe, fetch_velocity, recipe.coefficients))


BUILDERS.register("merge")(crossover)  # a baseline merge (e.g. uniform over all members): same mechanics


@BUILDERS.register("composition")
def composition(recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
    """A coefficient search's merge: one row of coefficients per tensor group (see merge/groups.py),
    group-major in ``recipe.coefficients``; no inherited velocity."""
    params = dict(recipe.params)
    lora_mode = params.pop("lora_mode", "factors")
    spec = {"groups": params.pop("groups", None)}
    params.pop("group_labels", None)
    parents = [fetch(p) for p in recipe.parents]
    groups = groups_from_params(parents[0].layout.names, spec)
    weights = torch.tensor(recipe.coefficients, dtype=torch.float32).reshape(len(groups), len(parents))
    child = merge_genomes_grouped(recipe.method, parents, weights, groups.of, seed=recipe.seed, params=params,
                                  lora_mode=lora_mode)
    return Built(child)


@BUILDERS.register("mutation")
def mutation(recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
    """A mutated copy of the single parent."""
    child = mutate(fetch(recipe.parents[0]), seed=recipe.seed, **recipe.params)
    return Built(child, fetch_velocity(recipe.parents[0]))


@BUILDERS.register("succession")
def succession(recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
    """A swarm step of parents[0] toward its own best, the global best and away from the global worst."""
    x_id, p_id, g_id, w_id = recipe.parents
    p = recipe.params
    x, vel = swarm_step(fetch(x_id), fetch_velocity(x_id), fetch(p_id), fetch(g_id), fetch(w_id),
                        r=p["r"], phi=SwarmWeights(**p["phi"]), step=p["step"])
    return Built(x, vel)
