"""Each operator module, plan -> recipe -> JSON -> build, against hand-computed results.

A recipe must survive the lineage (JSON) unchanged and rebuild the same genome; its
parameters must validate against the operator's typed model; each parent gets a role."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.operators.base import OPERATORS, PlanContext, build, operator
from evo_merge.operators.crossover import CrossoverConfig, plan_crossover, uniform_merge_recipe
from evo_merge.operators.mutation import MutationConfig, plan_mutants
from evo_merge.operators.recipe import Recipe
from evo_merge.operators.split_point import split_point_recipe
from evo_merge.operators.succession import SuccessionConfig, plan_succession

NAMES = ("model.embed_tokens.weight", "model.layers.0.mlp.weight", "model.layers.1.mlp.weight")


def genomes() -> dict[int, Genome]:
    g = torch.Generator().manual_seed(0)
    return {i: Genome.from_tensors({n: torch.randn(4, generator=g) for n in NAMES}, "delta") for i in range(4)}


POP = genomes()
FITNESS = np.array([0.2, 0.5, 0.9, 0.4])


def ctx(seed: int = 0) -> PlanContext:
    return PlanContext(np.random.default_rng(seed), lora_mode=None, names=NAMES)


def round_trip(recipe: Recipe) -> Genome:
    """Build the recipe as planned and as read back from JSON; both must be bit-identical."""
    again = Recipe(**json.loads(json.dumps(recipe.to_dict())))
    op = operator(recipe.operator)
    op.params(again)  # validates against the operator's typed parameters
    assert len(op.roles(again)) == len(again.parents)
    a = build(recipe, POP.__getitem__, lambda i: None).genome
    b = build(again, POP.__getitem__, lambda i: None).genome
    assert a.content_hash() == b.content_hash()
    return a


def test_every_operator_module_is_covered_here():
    assert set(OPERATORS.names()) == {"member", "crossover", "merge", "composition", "mutation", "succession"}


def test_crossover_linear_is_the_normalised_weighted_mean():
    cfg = CrossoverConfig(methods=[{"method": "linear"}], coefficients="fitness", parent_selection="rank")
    recipe = plan_crossover(cfg, ctx(), FITNESS, list(POP), None)
    assert recipe.operator == "crossover" and recipe.method == "linear" and len(recipe.parents) == 2
    a, b = recipe.parents
    wa, wb = FITNESS[a] / (FITNESS[a] + FITNESS[b]), FITNESS[b] / (FITNESS[a] + FITNESS[b])
    assert recipe.coefficients == pytest.approx([wa, wb])
    child = round_trip(recipe)
    torch.testing.assert_close(child.flat, (wa * POP[a].flat + wb * POP[b].flat) / (wa + wb))
    assert operator("crossover").roles(recipe) == [f"{wa:.3f}", f"{wb:.3f}"]


def test_merge_is_the_uniform_average():
    child = round_trip(uniform_merge_recipe(ctx(), [0, 1, 2, 3]))
    torch.testing.assert_close(child.flat, sum(g.flat for g in POP.values()) / 4)


def test_split_point_composition_by_hand():
    recipe = split_point_recipe(ctx(3), [1, 2])
    w, split = recipe.coefficients[0], recipe.params["groups"]["split_layer"]
    assert recipe.operator == "composition" and split == 1 and recipe.coefficients == pytest.approx([w, 1 - w, 1 - w, w])
    child = round_trip(recipe).tensors()
    p1, p2 = POP[1].tensors(), POP[2].tensors()
    for name in NAMES:  # embeddings and layer 0 before the split, layer 1 after it
        wa, wb = (w, 1 - w) if name != NAMES[2] else (1 - w, w)
        torch.testing.assert_close(child[name], wa * p1[name] + wb * p2[name])
    roles = operator("composition").roles(recipe)
    assert roles[0].startswith("mean 0.500, per-group")


def test_mutation_perturbs_about_rate_of_weights_reproducibly():
    big = {0: Genome.from_tensors({"w": torch.zeros(50_000)}, "delta")}
    recipes = plan_mutants(MutationConfig(rate=1.0, weight_rate=0.1, sigma=0.5, sigma_mode="absolute"), ctx(), [0])
    assert len(recipes) == 1 and recipes[0].params == {"mode": "gaussian", "weight_rate": 0.1, "sigma": 0.5,
                                                       "sigma_mode": "absolute"}
    child = build(recipes[0], big.__getitem__, lambda i: None).genome
    again = build(Recipe(**json.loads(json.dumps(recipes[0].to_dict()))), big.__getitem__, lambda i: None).genome
    assert child.content_hash() == again.content_hash()
    assert 0.09 < float((child.flat != 0).float().mean()) < 0.11
    assert operator("mutation").roles(recipes[0]) == ["mutate"]


def test_succession_step_by_hand():
    cfg = SuccessionConfig(enabled=True, rate=1.0, step=0.5)
    recipes = plan_succession(cfg, ctx(), [0, 1, 2], 1, lambda i: FITNESS[i], own_best=lambda i: 3)
    assert [r.parents for r in recipes] == [[0, 3, 2, 0], [1, 3, 2, 0], [2, 3, 2, 0]]  # x, own best, best, worst
    recipe = recipes[1]
    r, phi = recipe.params["r"], recipe.params["phi"]
    c = [r[0] * phi["inertia"], r[1] * phi["cognitive"], r[2] * phi["social"], r[3] * phi["repel"]]
    x, p, g, w = (POP[i].flat for i in recipe.parents)
    v = (c[1] * (p - x) + c[2] * (g - x) - c[3] * (w - x)) / sum(c)
    torch.testing.assert_close(round_trip(recipe).flat, x + 0.5 * v)
    assert operator("succession").roles(recipe) == ["moves", "own best", "global best", "repel"]
    assert operator("succession").own_best_sources(recipe) == [1]


def test_malformed_recipe_parameters_are_one_line_errors():
    bad = Recipe("mutation", [0], params={"weight_rate": 2.0, "sigma": 0.1}, seed=1)
    with pytest.raises(EvoMergeError, match="mutation recipe: parameter weight_rate"):
        build(bad, POP.__getitem__, lambda i: None)
    with pytest.raises(EvoMergeError, match="operator 'member' makes no offspring"):
        build(Recipe("member"), POP.__getitem__, lambda i: None)
