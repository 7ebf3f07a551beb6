"""The loop on tiny random populations: determinism, test-set isolation, re-scoring, elitism."""

import json

import numpy as np
import pytest
import torch
import yaml

import factories
from evo_merge.config import load_run_config
from evo_merge.fitness.evaluator import LocalEvaluator
from evo_merge.fitness.tasks import load_task
from evo_merge.model_host import ModelHost
from evo_merge.population import load_population
from evo_merge.runner import execute
from evo_merge.store import RunStore
from signatures import signature


EVO = {"generations": 2, "population_size": 4, "succession": {"enabled": True},
       "mutation": {"rate": 0.5, "sigma": 0.02},
       "crossover": {"methods": [{"method": "ties", "params": {"density": 0.7}}, {"method": "dare_ties",
                                                                                   "params": {"density": 0.5}},
                                 {"method": "slerp"}, {"method": "linear"}]}}


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_same_seed_same_lineage_and_different_seed_differs(kind, tiny_full, tiny_lora, tmp_path):
    pop = tiny_full if kind == "full" else tiny_lora
    task = factories.write_task(tmp_path)
    cfg_path = factories.write_run_config(tmp_path, pop, task, **EVO)
    sigs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = load_run_config(cfg_path, {"out": str(tmp_path / name), "seed": seed})
        execute(cfg)
        sigs.append(signature(tmp_path / name))
    assert sigs[0] == sigs[1]
    assert sigs[0] != sigs[2]
    operators = {r[2] for r in sigs[0]["individuals"]}
    assert {"member", "crossover", "mutation", "succession", "merge"} <= operators


def test_every_individual_is_scored_on_its_own_weights(tiny_full, tmp_path):
    """Moved (succession) and mutated individuals carry the fitness of their own weights, not stale ones."""
    task = factories.write_task(tmp_path)
    cfg = load_run_config(factories.write_run_config(tmp_path, tiny_full, task, **EVO))
    out = execute(cfg)
    population = load_population(cfg.population)
    members = population.load_genomes()
    host = ModelHost(population.base_dir, next(iter(members.values())).layout, device="cpu")
    evaluator = LocalEvaluator(host, [(load_task(task), 1.0)])
    store = RunStore.open(out.run_dir)
    checked = 0
    for ind in store.lineage.all():
        if ind.operator in ("succession", "mutation"):
            ev = evaluator.evaluate(store.weights.load(ind.weights))
            assert ev.score == pytest.approx(ind.fitness)
            checked += 1
        if ind.operator == "succession":
            assert ind.velocity is not None
    assert checked > 0
    gens = store.lineage.generations()
    assert all(b["best"] >= a["best"] for a, b in zip(gens, gens[1:]))  # elites kept
    store.close()


def test_test_split_never_feeds_selection(tiny_full, tmp_path):
    """Changing the test examples changes no lineage choice and no fitness."""
    task = factories.write_task(tmp_path)
    cfg_path = factories.write_run_config(tmp_path, tiny_full, task, **EVO)
    execute(load_run_config(cfg_path, {"out": str(tmp_path / "a")}))
    spec = yaml.safe_load(task.read_text())
    data = tmp_path / spec["dataset"]["path"]
    rows = [json.loads(l) for l in data.read_text().splitlines()]
    order = np.random.default_rng(spec.get("split_seed", 0)).permutation(len(rows))
    for i in order[spec["fitness_samples"]:]:  # scramble every non-fitness row's answer
        rows[i]["answer"] = rows[i]["choices"][(rows[i]["choices"].index(rows[i]["answer"]) + 3) % 10]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    execute(load_run_config(cfg_path, {"out": str(tmp_path / "b")}))
    assert signature(tmp_path / "a", with_test=False) == signature(tmp_path / "b", with_test=False)


def test_installing_a_genome_changes_the_model_exactly(tiny_full):
    population = load_population(tiny_full)
    members = population.load_genomes()
    g = members["m1"]
    host = ModelHost(population.base_dir, g.layout, device="cpu")
    host.install(g)
    from safetensors.torch import load_file
    ft = load_file(str(population.member_dirs["m1"] / "model.safetensors"))
    params = dict(host.model.named_parameters())
    for name in g.layout.names:
        torch.testing.assert_close(params[name].data, ft[name], rtol=0, atol=1e-6)
