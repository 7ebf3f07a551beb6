"""Nevergrad coefficient search: known optima, L1, parallel tells, resume by replay, grouped merges."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from evo_merge.config import SearchConfig
from evo_merge.errors import EvoMergeError
from evo_merge.fitness.evaluator import Evaluation
from evo_merge.genome import Genome
from evo_merge.merge import merge_genomes_grouped
from evo_merge.merge.groups import tensor_groups
from evo_merge.operators.base import build
from evo_merge.operators.recipe import Recipe
from evo_merge.pool.jobs import Job, JobResult
from evo_merge.search import CoefficientSearch, CoefficientSpace
from evo_merge.search.space import optimizer_class
from evo_merge.store.lineage import LineageDB


class AnalyticExecutor:
    """Scores a composition job by a known function of its coefficients; finishes jobs
    first-in-first-out, or last-in-first-out to mimic workers finishing out of order."""

    def __init__(self, fitness, lifo: bool = False, crash_after: int | None = None):
        self.fitness, self.lifo, self.crash_after = fitness, lifo, crash_after
        self.queue: deque[tuple[int, Job]] = deque()
        self.next_ticket = self.done = 0

    def submit(self, job: Job) -> int:
        self.queue.append((self.next_ticket, job))
        self.next_ticket += 1
        return self.next_ticket - 1

    def next_done(self) -> tuple[int, JobResult]:
        if self.crash_after is not None and self.done >= self.crash_after:
            raise KeyboardInterrupt("simulated crash")
        self.done += 1
        ticket, job = self.queue.pop() if self.lifo else self.queue.popleft()
        score = float(self.fitness(np.array(job.recipe.coefficients), job.recipe.params))
        ev = Evaluation(score, {"t": score}, {}, {}, loss=-score)
        return ticket, JobResult("", None, ev, 0.0, "fake")


def run_search(tmp_path, cfg: SearchConfig, executor, k: int = 3, db: LineageDB | None = None,
               search_id: int | None = None, names=("w",)):
    db = db or LineageDB(tmp_path / "lineage.sqlite")
    if search_id is None:
        search_id = db.add_search(1, list(range(k)), cfg.model_dump(mode="json"), 7, None)
    groups = tensor_groups(list(names), cfg.granularity, cfg.layer_groups, cfg.filters)
    space = CoefficientSpace(cfg, k, groups, seed=7)
    search = CoefficientSearch(search_id, cfg, space, list(range(k)), {i: f"h{i}" for i in range(k)}, 7, db,
                               executor, lora_mode=None)
    return search, db, search_id


TARGET = np.array([0.6, -0.4, 0.9])


def test_finds_a_known_optimum_within_tolerance(tmp_path):
    cfg = SearchConfig(optimizer="NGOpt", budget=300, bounds=(-1.5, 1.5))
    search, db, _ = run_search(tmp_path, cfg, AnalyticExecutor(lambda w, p: -np.sum((w - TARGET) ** 2)))
    best = search.run()
    assert np.max(np.abs(np.array(best.candidate.coefficients) - TARGET)) < 0.05
    assert len([r for r in db.search_candidates(search.id) if r["told"] is not None]) == 300


def test_searched_merge_parameter_is_found(tmp_path):
    cfg = SearchConfig(optimizer="TwoPointsDE", budget=200, params={"density": [0.1, 1.0], "lambda_": 1.0})
    fitness = lambda w, p: -np.sum((w - TARGET) ** 2) - (p["density"] - 0.35) ** 2  # noqa: E731
    best = run_search(tmp_path, cfg, AnalyticExecutor(fitness))[0].run()
    assert best.candidate.params["density"] == pytest.approx(0.35, abs=0.05)
    assert best.candidate.params["lambda_"] == 1.0


def test_l1_moves_the_solution_toward_sparser_coefficients(tmp_path):
    """Only the first coefficient matters; L1 drives the two irrelevant ones toward zero."""
    fitness = lambda w, p: -(w[0] - 0.8) ** 2  # noqa: E731
    results = {}
    for l1 in (0.0, 0.5):
        cfg = SearchConfig(optimizer="NGOpt", budget=200, l1=l1)
        (tmp_path / str(l1)).mkdir()
        best = run_search(tmp_path / str(l1), cfg, AnalyticExecutor(fitness))[0].run()
        results[l1] = np.abs(best.candidate.coefficients[1:]).sum()
    assert results[0.5] < 0.1
    assert results[0.5] < 0.5 * results[0.0]


@pytest.mark.parametrize("tell_order,lifo", [("completion", False), ("completion", True), ("ask", True)])
def test_resumed_search_proposes_the_same_candidates(tmp_path, tell_order, lifo):
    cfg = SearchConfig(optimizer="NGOpt", budget=40, num_workers=3, tell_order=tell_order)
    fitness = lambda w, p: -np.sum((w - TARGET) ** 2)  # noqa: E731
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole, db_a, id_a = run_search(tmp_path / "a", cfg, AnalyticExecutor(fitness, lifo=lifo))
    whole.run()
    interrupted, db_b, id_b = run_search(tmp_path / "b", cfg, AnalyticExecutor(fitness, lifo=lifo, crash_after=17))
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    told = [r for r in db_b.search_candidates(id_b) if r["told"] is not None]
    assert 10 <= len(told) <= 17  # with tell_order 'ask', finished-but-untold results are lost and re-run
    resumed, _, _ = run_search(tmp_path / "b", cfg, AnalyticExecutor(fitness, lifo=lifo), db=db_b, search_id=id_b)
    resumed.run()
    key = lambda r: (r["idx"], r["told"], r["value"], r["objective"])  # noqa: E731
    assert [key(r) for r in db_b.search_candidates(id_b)] == [key(r) for r in db_a.search_candidates(id_a)]


def test_ask_order_makes_the_search_independent_of_completion_order(tmp_path):
    cfg = SearchConfig(optimizer="NGOpt", budget=30, num_workers=4, tell_order="ask")
    fitness = lambda w, p: -np.sum((w - TARGET) ** 2)  # noqa: E731
    logs = []
    for lifo in (False, True):
        (tmp_path / str(lifo)).mkdir()
        search, db, sid = run_search(tmp_path / str(lifo), cfg, AnalyticExecutor(fitness, lifo=lifo))
        search.run()
        logs.append([(r["value"], r["told"]) for r in db.search_candidates(sid)])
    assert logs[0] == logs[1]


def test_replay_detects_a_log_that_does_not_match(tmp_path):
    cfg = SearchConfig(optimizer="NGOpt", budget=10)
    fitness = lambda w, p: -np.sum(w ** 2)  # noqa: E731
    search, db, sid = run_search(tmp_path, cfg, AnalyticExecutor(fitness, crash_after=4))
    with pytest.raises(KeyboardInterrupt):
        search.run()
    db.conn.execute("UPDATE search_candidates SET value = ? WHERE search = ? AND idx = 1",
                    ('{"coefficients": [9, 9, 9], "params": {}}', sid))
    resumed, _, _ = run_search(tmp_path, cfg, AnalyticExecutor(fitness), db=db, search_id=sid)
    with pytest.raises(EvoMergeError, match="differs from the one recorded"):
        resumed.run()


def test_unknown_optimizer_names_close_matches():
    with pytest.raises(EvoMergeError, match=r"unknown Nevergrad optimizer 'NGOptt' \(did you mean NGOpt"):
        optimizer_class("NGOptt")


@pytest.mark.parametrize("bad", [{"bounds": [1.0, -1.0]}, {"bounds": [0.0, float("inf")]}, {"parents": 1},
                                 {"params": {"density": [0.9, 0.1]}}, {"granularity": "filters"}])
def test_bad_search_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SearchConfig(**bad)


# -- groups and grouped merges -----------------------------------------------------------------
NAMES = ["model.embed_tokens.weight", "model.layers.0.mlp.w", "model.layers.0.self_attn.q",
         "model.layers.1.mlp.w", "model.layers.1.self_attn.q", "model.layers.2.mlp.w", "model.layers.3.mlp.w",
         "model.norm.weight"]


def test_layer_groups_split_consecutive_layers_and_keep_the_rest_apart():
    g = tensor_groups(NAMES, "layers", layer_groups=2)
    assert g.labels == ("layers 0-1", "layers 2-3", "other")
    assert g.of == (2, 0, 0, 0, 0, 1, 1, 2)


def test_filter_groups_take_the_first_matching_filter():
    g = tensor_groups(NAMES, "filters", filters=["self_attn", "mlp"])
    assert g.labels == ("self_attn", "mlp", "rest")
    assert g.of == (2, 1, 0, 1, 0, 1, 1, 2)
    with pytest.raises(EvoMergeError, match="'lm_head' matches no tensor"):
        tensor_groups(NAMES, "filters", filters=["lm_head"])
    with pytest.raises(EvoMergeError, match="layer_groups must be between 1 and the 4 layers"):
        tensor_groups(NAMES, "layers", layer_groups=5)


def test_grouped_merge_applies_each_groups_weights_by_hand():
    a = Genome.from_tensors({"x.layers.0.w": torch.tensor([1.0, 2.0]), "x.layers.1.w": torch.tensor([3.0])}, "delta")
    b = Genome.from_tensors({"x.layers.0.w": torch.tensor([10.0, 20.0]), "x.layers.1.w": torch.tensor([30.0])}, "delta")
    w = torch.tensor([[0.5, 0.25], [-1.0, 2.0]])
    child = merge_genomes_grouped("task_arithmetic", [a, b], w, [0, 1])
    t = child.tensors()
    assert torch.equal(t["x.layers.0.w"], torch.tensor([0.5 * 1 + 0.25 * 10, 0.5 * 2 + 0.25 * 20]))
    assert torch.equal(t["x.layers.1.w"], torch.tensor([-1.0 * 3 + 2.0 * 30]))


def test_composition_recipe_rebuilds_the_grouped_merge():
    a = Genome.from_tensors({"m.layers.0.w": torch.ones(3), "m.layers.1.w": torch.ones(2), "m.norm": torch.ones(1)},
                            "delta")
    b = a.with_flat(a.flat * 3)
    recipe = Recipe("composition", [4, 9], "task_arithmetic", [1.0, 0.0, 0.0, 1.0, 0.5, 0.5],
                    {"groups": {"granularity": "layers", "layer_groups": 2},
                     "group_labels": ["layers 0-0", "layers 1-1", "other"]}, seed=1)
    child = build(recipe, {4: a, 9: b}.__getitem__, lambda i: None).genome.tensors()
    assert torch.equal(child["m.layers.0.w"], torch.ones(3))
    assert torch.equal(child["m.layers.1.w"], torch.full((2,), 3.0))
    assert torch.equal(child["m.norm"], torch.full((1,), 2.0))


def test_grouped_product_mode_keeps_lora_pairs_together():
    t = {"m.layers.0.q.lora_A.weight": torch.ones(2, 4), "m.layers.0.q.lora_B.weight": torch.ones(4, 2)}
    a = Genome.from_tensors(t, "lora")
    with pytest.raises(EvoMergeError, match="in one coefficient group"):
        merge_genomes_grouped("linear", [a, a], torch.ones(2, 2), [0, 1], lora_mode="product")
