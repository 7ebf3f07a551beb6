"""Quality tooling: M2N2 niche operators, split-point crossover, multi-task with held-out
tasks, a fixed test set for fitness-size sweeps, and `evo-merge compare`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from evo_merge.config import load_run_config
from evo_merge.fitness.tasks import load_task
from evo_merge.genome import Genome
from evo_merge.merge.groups import tensor_groups
from evo_merge.operators.niches import attraction, attraction_parents, shared_fitness
from evo_merge.operators.base import build
from evo_merge.operators.recipe import Recipe
from evo_merge.operators.selection import select_survivors
from evo_merge.pool.factory import make_worker
from evo_merge.runner import execute, prepare
from evo_merge.store import RunStore

ROOT = Path(__file__).resolve().parents[1]

# A and B: the same generalist; C: a weaker generalist; D: the only one solving examples 4 and 5
NICHE = np.array([[1, 1, 1, 1, 0, 0],
                  [1, 1, 1, 1, 0, 0],
                  [1, 1, 1, 0, 0, 0],
                  [0, 0, 0, 0, 1, 1]], dtype=float)


def test_shared_fitness_by_hand():
    # column totals 3 3 3 2 1 1
    assert shared_fitness(NICHE) == pytest.approx([1 + 0.5, 1 + 0.5, 1.0, 2.0])


def test_fitness_sharing_keeps_the_specialist_that_plain_selection_drops():
    fit = NICHE.mean(axis=1)
    rng = np.random.default_rng(0)
    assert select_survivors("elites", fit, 2, rng, elite_fraction=0) == [0, 1]
    assert select_survivors("sharing", fit, 2, rng, elite_fraction=0, examples=NICHE) == [0, 3]


def test_attraction_pulls_toward_strength_where_the_first_parent_is_weak():
    assert attraction(NICHE, 0) == pytest.approx([0.0, 0.0, 0.0, 2.0])
    assert attraction(NICHE, 3) == pytest.approx([3 / 3 + 1 / 2, 3 / 3 + 1 / 2, 3 / 3, 0.0])
    for seed in range(20):
        first, second = attraction_parents(NICHE.mean(axis=1), 2, np.random.default_rng(seed), examples=NICHE)
        if first in (0, 1):
            assert second == 3  # nobody else beats a generalist anywhere


def test_split_point_groups_and_crossover_by_hand():
    names = ["m.embed_tokens.weight", "m.layers.0.w", "m.layers.1.w", "m.layers.2.w", "m.norm.weight"]
    g = tensor_groups(names, "split", split_layer=2)
    assert g.labels == ("before layer 2", "from layer 2") and g.of == (0, 0, 0, 1, 1)
    a = Genome.from_tensors({n: torch.full((2,), 1.0) for n in names}, "delta")
    b = a.with_flat(torch.full_like(a.flat, 10.0))
    w = 0.3
    recipe = Recipe("composition", [0, 1], "linear", [w, 1 - w, 1 - w, w],
                    {"groups": {"granularity": "split", "split_layer": 2}, "normalize": False}, seed=0)
    child = build(recipe, {0: a, 1: b}.__getitem__, lambda i: None).genome.tensors()
    assert torch.allclose(child["m.layers.1.w"], torch.full((2,), w * 1 + (1 - w) * 10))
    assert torch.allclose(child["m.layers.2.w"], torch.full((2,), (1 - w) * 1 + w * 10))
    assert torch.allclose(child["m.embed_tokens.weight"], child["m.layers.0.w"])
    assert torch.allclose(child["m.norm.weight"], child["m.layers.2.w"])


def test_test_split_last_keeps_the_test_set_whatever_the_fitness_size():
    spec = ROOT / "fitness" / "demo-prev-dec-add.yaml"
    small = load_task(spec, {"fitness_samples": 50, "test_split": "last"})
    large = load_task(spec, {"fitness_samples": 400, "test_split": "last"})
    assert small.test == large.test and len(small.fitness) == 50 and len(large.fitness) == 400
    assert load_task(spec).test != large.test  # the default split (test after fitness) is unchanged


def test_multi_task_with_held_out_tasks_never_used_for_fitness(tmp_path):
    overrides = {"out": str(tmp_path / "run"), "pool.backend": "local", "evolution.generations": 2,
                 "tasks": [{"spec": str(ROOT / "fitness" / "demo-add-next.yaml"), "weight": 2.0},
                           {"spec": str(ROOT / "fitness" / "demo-sub-inc.yaml"), "weight": 1.0}],
                 "heldout_tasks": [{"spec": str(ROOT / "fitness" / "demo-prev-dec-add.yaml")}]}
    cfg = load_run_config(ROOT / "configs" / "skills.yaml", overrides)
    prepared = prepare(cfg)
    worker = make_worker(prepared.spec)
    assert set(worker.evaluator.metrics["fitness"]) == {"add_next", "sub_inc"}
    assert set(worker.evaluator.metrics["heldout"]) == {"prev_dec_add"}
    outcome = execute(cfg, prepared=prepared)
    rows = {r["name"]: r for r in outcome.rows}
    assert all(0.0 <= r["heldout"] <= 1.0 and set(r["heldout_tasks"]) == {"prev_dec_add"} for r in rows.values())
    store = RunStore.open(outcome.run_dir)
    best = store.lineage.get(rows["evolved best"]["ids"][0])
    assert set(best.task_scores) == {"add_next", "sub_inc"}  # fitness: the weighted tasks only
    assert best.fitness == pytest.approx((2 * best.task_scores["add_next"] + best.task_scores["sub_inc"]) / 3)
    store.close()


@pytest.fixture(scope="module")
def small_compare(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    base = yaml.safe_load((ROOT / "configs" / "skills.yaml").read_text())
    base.update(population=str(ROOT / "populations" / "demo-lora.yaml"),
                tasks=[{"spec": str(ROOT / "fitness" / "demo-prev-dec-add.yaml")}])
    base["evolution"].update(generations=4, population_size=6)
    base_path = tmp / "base.yaml"
    base_path.write_text(yaml.safe_dump(base))
    cfg = {"base": str(base_path), "out": str(tmp / "out"), "seeds": [0, 1], "budget": 6,
           "methods": ["best member", "uniform merge", "GENOME", "GENOME+", "M2N2"],
           "sweep": {"method": "GENOME", "fitness_samples": [50, 100]}}
    path = tmp / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, tmp / "out"


def test_compare_writes_mean_and_std_per_method_and_the_sweep(small_compare, cli):
    path, out = small_compare
    code, stdout, err = cli("compare", path)
    assert code == 0, err
    with open(out / "compare.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 5 and {r["seed"] for r in rows} == {"0", "1"}
    by = {}
    for r in rows:
        by.setdefault(r["method"], []).append(float(r["test"]))
    assert len(set(by["best member"])) == 1  # the same member whatever the seed
    assert np.mean(by["M2N2"]) > np.mean(by["best member"]) + 0.2  # niche evolution really improves
    assert np.mean(by["GENOME"]) > np.mean(by["uniform merge"]) + 0.2
    md = (out / "compare.md").read_text()
    assert "| M2N2 | " in md and "±" in md
    for name in ("compare.png", "sweep.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    with open(out / "sweep.csv") as fh:
        assert {r["method"] for r in csv.DictReader(fh)} == {"GENOME @ 50", "GENOME @ 100"}
    m2n2_run = next(r["run_dir"] for r in rows if r["method"] == "M2N2")
    with RunStore.open(m2n2_run) as store:
        splits = [i for i in store.lineage.all() if i.operator == "composition"]
        assert splits and all(i.params["groups"]["granularity"] == "split" for i in splits)


@pytest.mark.parametrize("args,message", [
    (["--methods", "best member,Frankenmerge"], "unknown comparison method 'Frankenmerge'"),
    (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
])
def test_compare_bad_input_is_one_line(small_compare, cli, tmp_path, args, message):
    path, _ = small_compare
    code, _, err = cli("compare", path, "--out", tmp_path / "o", *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
