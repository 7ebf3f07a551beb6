"""Batched multi-LoRA scoring gives the same predictions as one pass per individual."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import factories
from evo_merge.fitness.evaluator import LocalEvaluator
from evo_merge.fitness.tasks import load_task
from evo_merge.model_host import ModelHost
from evo_merge.population import load_population


@pytest.mark.parametrize("arch", factories.ARCHS)
def test_batched_scores_equal_separate_passes(tmp_path, arch):
    pop = load_population(factories.write_population(tmp_path / "pop", "lora", arch, n=4))
    genomes = list(pop.load_genomes().values())
    rng = torch.Generator().manual_seed(0)
    genomes += [g.with_flat(g.flat + 0.05 * torch.randn(g.flat.shape, generator=rng)) for g in genomes]
    tasks = [(load_task(factories.write_task(tmp_path, n_rows=24, name="t1")), 1.0),
             (load_task(factories.write_task(tmp_path, n_rows=24, name="t2", metric="neg_loss")), 1.0)]
    host = ModelHost(pop.base_dir, genomes[0].layout, adapter_dir=next(iter(pop.member_dirs.values())), device="cpu",
                     basis=genomes[0].basis)
    ev = LocalEvaluator(host, tasks, batch_size=8)
    separate = [ev.evaluate(g) for g in genomes]
    batched = ev.evaluate_many(genomes, slots=3, max_rows=20)  # several chunks and calls per batch
    for one, many in zip(separate, batched):
        assert many.score == pytest.approx(one.score, abs=1e-6)
        for name in one.predictions:
            np.testing.assert_allclose(np.concatenate([np.ravel(x) for x in many.predictions[name]]),
                                       np.concatenate([np.ravel(x) for x in one.predictions[name]]), atol=1e-4)
    again = ev.evaluate(genomes[1])  # the slots leave the default adapter as it was
    assert again.score == pytest.approx(separate[1].score, abs=1e-6)


def test_a_run_with_batched_scoring_equals_one_without(tmp_path):
    from pathlib import Path

    from evo_merge.config import load_run_config
    from evo_merge.runner import execute
    from signatures import signature

    root = Path(__file__).resolve().parents[1]
    sigs = []
    for slots in (0, 4):
        cfg = load_run_config(root / "configs" / "skills.yaml", {
            "out": str(tmp_path / f"run{slots}"), "pool.backend": "local", "eval.multi_lora": slots,
            "evolution.generations": 3})
        execute(cfg)
        sig = signature(cfg.out)
        sigs.append({k: v for k, v in sig.items() if k != "individuals"} |
                    {"individuals": [r[:13] for r in sig["individuals"]]})  # all but test-split columns
    assert sigs[0] == sigs[1]


@pytest.mark.parametrize("mode", ["async", "search"])
def test_steady_state_and_searches_batch_through_the_executor(tmp_path, monkeypatch, mode):
    """Batching is the executor's policy, so every driver that submits jobs gets it."""
    from pathlib import Path

    from evo_merge.config import load_run_config
    from evo_merge.pool.worker import Worker
    from evo_merge.runner import execute, execute_search

    sizes: list[int] = []
    run_many = Worker.run_many

    def spy(self, jobs, slots):
        sizes.append(len(jobs))
        return run_many(self, jobs, slots)

    monkeypatch.setattr(Worker, "run_many", spy)
    root = Path(__file__).resolve().parents[1]
    overrides = {"out": str(tmp_path / "run"), "pool.backend": "local", "eval.multi_lora": 4,
                 "evolution.generations": 2, "evolution.succession.enabled": False}
    if mode == "async":
        execute(load_run_config(root / "configs" / "skills.yaml", {**overrides, "pool.mode": "async"}))
    else:
        execute_search(load_run_config(root / "configs" / "skills.yaml",
                                       {**overrides, "search.budget": 8, "search.num_workers": 4}))
    assert sizes and max(sizes) == 4
