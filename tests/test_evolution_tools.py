"""The tools that let evolution beat static merges: subset and layer-wise crossover, member
nudges, the stall rule, the mutation-effect count."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evo_merge.config import StallConfig
from evo_merge.engine.stall import StallRule
from evo_merge.genome import Genome
from evo_merge.operators.base import PlanContext, build
from evo_merge.operators.coefficients import COEFFICIENTS
from evo_merge.operators.layerwise import layerwise_recipe
from evo_merge.operators.member_nudge import nudge_recipe
from evo_merge.report.effects import mutation_effect

NAMES = tuple(f"model.layers.{i}.mlp.weight" for i in range(4)) + ("model.embed_tokens.weight", "lm_head.weight")


def pop() -> dict[int, Genome]:
    g = torch.Generator().manual_seed(1)
    return {i: Genome.from_tensors({n: torch.randn(3, generator=g) for n in NAMES}, "delta") for i in range(4)}


POP = pop()


def ctx(seed=0) -> PlanContext:
    return PlanContext(np.random.default_rng(seed), None, NAMES)


def test_subset_coefficients_reach_the_uniform_mix_of_every_subset():
    rng = np.random.default_rng(0)
    seen = {tuple(COEFFICIENTS.get("subset")(np.zeros(3), rng)) for _ in range(400)}
    for k in (1, 2, 3):
        for subset in itertools.combinations(range(3), k):
            want = tuple(1.0 / k if i in subset else 0.0 for i in range(3))
            assert want in seen, want
    assert len(seen) == 7


def test_layerwise_blocks_are_contiguous_and_each_a_convex_mix():
    for seed in range(20):
        r = layerwise_recipe(ctx(seed), [0, 1, 2], [0.2, 0.3, 0.5], None)
        cuts = r.params["groups"]["cuts"]
        assert r.operator == "composition" and r.params["origin"] == "layerwise" and cuts == sorted(set(cuts))
        rows = np.array(r.coefficients).reshape(len(r.params["group_labels"]), 3)
        assert np.allclose(rows.sum(1), 1.0) and (rows >= 0).all()
        child = build(r, POP.__getitem__, lambda i: None).genome.tensors()
        bounds = [0, *cuts, 4]
        for g, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            for layer in range(lo, hi):
                name = f"model.layers.{layer}.mlp.weight"
                want = sum(rows[g, j] * POP[j].tensors()[name] for j in range(3))
                torch.testing.assert_close(child[name], want)
        emb = sum(rows[0, j] * POP[j].tensors()["model.embed_tokens.weight"] for j in range(3))
        torch.testing.assert_close(child["model.embed_tokens.weight"], emb)  # embeddings go with the first block


def test_member_nudge_adds_delta_of_one_member_in_one_block():
    for seed in range(10):
        r = nudge_recipe(ctx(seed), 3, [0, 1, 2], sigma=0.5)
        parent, member = r.parents
        assert parent == 3 and member in (0, 1, 2) and r.params["origin"] == "mutation"
        child = build(r, POP.__getitem__, lambda i: None).genome.tensors()
        rows = np.array(r.coefficients).reshape(-1, 2)
        assert (rows[:, 0] == 1.0).all() and ((rows[:, 1] == 0.0).sum() >= len(rows) - 1)
        delta = float(rows[:, 1][rows[:, 1] != 0][0]) if (rows[:, 1] != 0).any() else 0.0
        touched = [n for n in NAMES if not torch.equal(child[n], POP[3].tensors()[n])]
        for n in touched:
            torch.testing.assert_close(child[n], POP[3].tensors()[n] + delta * POP[member].tensors()[n])
        layers = sorted(int(n.split(".")[2]) for n in touched if ".layers." in n)
        assert layers == list(range(layers[0], layers[-1] + 1)) if layers else True  # one contiguous block


def test_the_stall_rule_fires_after_patience_and_waits_after_acting():
    rule = StallRule(StallConfig(patience=2))
    for g, best in enumerate([0.3, 0.5, 0.5]):
        rule.record(g, best, 0.1, False)
    assert rule.stalled() is None                      # one generation without a rise
    rule.record(3, 0.5, 0.1, False)
    assert "has not risen for 2 generations" in rule.stalled()["reason"]
    rule.record(4, 0.5, 0.1, True)                     # the rule acted in generation 4
    assert rule.stalled() is None
    rule.record(5, 0.5, 0.1, False)
    rule.record(6, 0.5, 0.1, False)
    assert rule.stalled()["since"] == 4
    spread = StallRule(StallConfig(patience=9, min_spread=0.01))
    spread.record(0, 0.5, 0.1, False)
    spread.record(1, 0.6, 0.001, False)
    assert "spread" in spread.stalled()["reason"]
    assert StallRule(StallConfig(enabled=False), [(0, 0.1, 0.0, False), (9, 0.1, 0.0, False)]).stalled() is None


def test_mutation_effect_counts_mutants_that_changed_fitness():
    row = lambda i, op, parents=(), fit=0.5, params=None: SimpleNamespace(  # noqa: E731
        id=i, operator=op, parents=list(parents), fitness=fit, params=params)
    rows = [row(0, "member"), row(1, "mutation", [0], 0.5), row(2, "mutation", [0], 0.6),
            row(3, "composition", [2, 0], 0.7, {"origin": "mutation"}), row(4, "composition", [0, 2], 0.1)]
    effect = mutation_effect(rows)
    assert (effect.mutants, effect.changed) == (3, 2) and "2 of 3 mutants (67%)" in effect.text()


@pytest.mark.parametrize("mode", ["exact", "factors"])
def test_a_run_with_the_stall_rule_records_it_and_resumes_identically(tiny_lora, tmp_path, mode):
    import factories
    from evo_merge.config import load_run_config
    from evo_merge.runner import execute, prepare, resume_run
    from evo_merge.store import RunStore
    from signatures import signature
    from test_resume import CrashAt

    task = factories.write_task(tmp_path)
    evo = {"generations": 6, "population_size": 4, "stall": {"patience": 1, "actions": ["immigrants", "boost"]},
           "crossover": {"layerwise": 0.5, "methods": [{"method": "linear"}]},
           "mutation": {"rate": 0.5, "mode": "member", "sigma": 0.3}}
    cfg_path = factories.write_run_config(tmp_path, tiny_lora, task, **evo)
    whole = load_run_config(cfg_path, {"out": str(tmp_path / "whole"), "lora.mode": mode})
    prepared = prepare(whole)
    execute(whole, prepared=prepared)
    with RunStore.open(whole.out) as store:
        events = [(g["generation"], e) for g in store.lineage.generations() for e in g["events"]]
        assert events, "patience 1 on a tiny task: the rule must act"
        for gen, event in events:
            assert event["actions"] == ["immigrants", "boost"] and event["boost"] == 3.0
            assert set(event["immigrants"]) <= set(store.lineage.population(gen))  # admitted
    cut = load_run_config(cfg_path, {"out": str(tmp_path / "cut"), "lora.mode": mode})
    with pytest.raises(KeyboardInterrupt):
        execute(cut, CrashAt(25), prepared)
    resume_run(cut.out, prepared=prepared)
    assert signature(cut.out) == signature(whole.out)


@pytest.mark.parametrize("fraction", [0.2, 0.35, 0.5, 0.7, 0.9])
def test_the_stall_rule_acts_in_async_mode_and_resumes_identically(tiny_lora, tmp_path, fraction):
    """In the steady-state mode the rule is checked at each report: its immigrants join as they
    finish (recorded with the next report's event), offspring until then mutate with the
    boosted sigma, and a run cut anywhere resumes to the uninterrupted one."""
    import factories
    from evo_merge.config import load_run_config
    from evo_merge.runner import execute, prepare, resume_run
    from evo_merge.store import RunStore
    from signatures import signature
    from test_resume import CrashAt

    task = factories.write_task(tmp_path)
    evo = {"generations": 8, "population_size": 4,
           "stall": {"patience": 1, "min_spread": 1.0, "actions": ["immigrants", "boost"]},
           "crossover": {"rate": 0.5, "methods": [{"method": "linear"}]},
           "mutation": {"mode": "gaussian", "sigma": 0.01, "sigma_mode": "absolute"}}
    cfg_path = factories.write_run_config(tmp_path, tiny_lora, task, **evo)
    overrides = {"pool.mode": "async", "pool.backend": "local", "lora.mode": "exact"}
    whole = load_run_config(cfg_path, {**overrides, "out": str(tmp_path / "whole")})
    prepared = prepare(whole)
    counter = CrashAt(10**9)
    execute(whole, counter, prepared)
    with RunStore.open(whole.out) as store:
        inds = {i.id: i for i in store.lineage.all()}
        events = [(g["generation"], e) for g in store.lineage.generations() for e in g["events"]]
        assert len(events) >= 2, "a spread under 1.0 is a stall at every report the rule did not act in"
        for gen, event in events:
            assert event["actions"] == ["immigrants", "boost"] and event["boost"] == 3.0 and event["immigrants"]
            assert all(inds[i].generation == gen and inds[i].operator == inds[event["immigrants"][0]].operator
                       for i in event["immigrants"])
        boosted = {round(i.params["sigma"], 6) for i in inds.values() if i.params and "sigma" in i.params}
        assert boosted == {0.01, 0.03}  # boosted after a stall, plain otherwise
        offspring = sum(g["offspring"] for g in store.lineage.generations() if g["generation"] > 0)
        assert offspring == 8 * 4 // 2  # immigrants are no part of the offspring budget
    cut = load_run_config(cfg_path, {**overrides, "out": str(tmp_path / "cut")})
    with pytest.raises(KeyboardInterrupt):
        execute(cut, CrashAt(int(fraction * (10**9 - counter.n))), prepared)
    resume_run(cut.out, prepared=prepared)
    assert signature(cut.out) == signature(whole.out)


def test_overrides_never_edit_the_callers_values(tmp_path):
    """A baseline's settings dict reused by another baseline stays as it was (an aliasing bug once
    turned GENOME's crossover rate to Model Swarms' 0)."""
    from pathlib import Path

    from evo_merge.baselines import METHODS
    from evo_merge.config import load_run_config

    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    swarms = load_run_config(demo, METHODS.get("Model Swarms")(80).overrides)
    genome = load_run_config(demo, METHODS.get("GENOME")(80).overrides)
    assert swarms.evolution.crossover.rate == 0.0 and swarms.evolution.succession.enabled
    assert genome.evolution.crossover.rate == 0.8 and genome.evolution.mutation.rate == 0.15
    assert genome.lora.mode == "factors" and genome.evolution.mutation.sigma_mode == "absolute"
    assert not genome.evolution.succession.enabled and not genome.evolution.stall.enabled
