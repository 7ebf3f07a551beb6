"""lm-eval-harness tasks as fitness: the same per-document scores as lm-eval's own evaluation of
the same model, and a whole evolution run driven by an lm-eval task (local task YAMLs, no hub)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import factories
from evo_merge.errors import EvoMergeError

lm_eval = pytest.importorskip("lm_eval")
SOURCE = Path(__file__).parent / "data" / "lm_eval_tasks"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """The test tasks with their data file's absolute path (lm-eval reads data_files from the cwd)."""
    out = tmp_path_factory.mktemp("lm_eval_tasks")
    for spec in SOURCE.glob("*.yaml"):
        (out / spec.name).write_text(spec.read_text().replace("tiny_sums.jsonl", str(SOURCE / "tiny_sums.jsonl")))
    return out


def spec_file(tmp_path: Path, task_dir: Path, task: str, **extra) -> Path:
    path = tmp_path / f"{task}.yaml"
    path.write_text(yaml.safe_dump({"name": task, "lm_eval": {"task": task, "include_path": str(task_dir)},
                                    "fitness_samples": 30, "test_samples": 20, **extra}))
    return path


@pytest.mark.parametrize("task,metric,docs", [("tiny_mc", "acc", 60), ("tiny_gen", "exact_match", 60),
                                              ("tiny_outer", "acc", 180)])
def test_scores_equal_lm_evals_own_document_by_document(task_dir, task, metric, docs):
    """A task, and a group of a group of two tasks and a task (each document scored by its own task)."""
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from evo_merge.fitness.lm_eval_task import DOC_ID, TASK_ID, LmEvalSpec, lm_eval_documents
    from evo_merge.fitness.metrics import make_metric
    from evo_merge.fitness.tasks import TaskSpec

    model, tok = factories.make_arch_model("llama").eval(), factories.make_tokenizer()
    spec = TaskSpec(name=task, lm_eval=LmEvalSpec(task=task, include_path=str(task_dir)))
    rows = lm_eval_documents(spec.lm_eval)
    ours = make_metric(spec, rows, tok, torch.device("cpu"), 16)
    scores = ours.score(ours.predict(model))
    result = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=tok, batch_size=16), tasks=[task],
                                     task_manager=TaskManager(include_path=str(task_dir)), log_samples=True,
                                     verbosity="ERROR")
    theirs = {(name, s["doc_id"]): float(s[metric]) for name, samples in result["samples"].items() for s in samples}
    assert len(rows) == len(theirs) == docs
    np.testing.assert_array_equal(scores, [theirs[(d.get(TASK_ID, task), d[DOC_ID])] for d in rows])


def test_a_groups_tasks_each_run_their_shared_prefix_once(task_dir):
    """The group's two tasks start their prompts with different descriptions: the scorer finds
    the two prefixes and scores each task's rows from its own prefix's cache."""
    from evo_merge.fitness.cached_scoring import CachedChoiceScorer
    from evo_merge.fitness.lm_eval_task import LmEvalSpec, lm_eval_documents
    from evo_merge.fitness.metrics import make_metric
    from evo_merge.fitness.scorers import ScorerSet
    from evo_merge.fitness.tasks import TaskSpec

    tok = factories.make_tokenizer()
    spec = TaskSpec(name="g", lm_eval=LmEvalSpec(task="tiny_group", include_path=str(task_dir)))
    rows = lm_eval_documents(spec.lm_eval)[::7]
    metric = make_metric(spec, rows, tok, torch.device("cpu"), 16)
    assert isinstance(metric.scorer, ScorerSet) and len(metric.scorer.parts) == 2
    prefixes = {tok.decode(s.prefix) for s, _ in metric.scorer.parts if isinstance(s, CachedChoiceScorer)}
    assert {p[:17] for p in prefixes} == {"a b c d e f g h: ", "j i h g f e d c: "}
    owner = [name for name, _, requests in metric.docs for _ in requests]  # per request, its task
    kinds = [{owner[metric.loglik[j]] for j in idx} for _, idx in metric.scorer.parts]
    assert sorted(map(sorted, kinds)) == [["tiny_mc_a"], ["tiny_mc_b"]]


def test_an_lm_eval_task_drives_a_whole_evolution(tiny_lora, task_dir, tmp_path):
    from evo_merge.config import load_run_config
    from evo_merge.runner import execute
    from evo_merge.store import RunStore

    task = spec_file(tmp_path, task_dir, "tiny_mc")
    cfg = load_run_config(factories.write_run_config(tmp_path, tiny_lora, task, generations=2,
                                                     racing={"enabled": True}))
    out = execute(cfg)
    rows = {r["name"]: r for r in out.rows}
    assert set(rows["evolved best"]["test_tasks"]) == {"tiny_mc"} and 0 <= rows["evolved best"]["test"] <= 1
    with RunStore.open(out.run_dir) as store:
        inds = store.lineage.all()
        assert {i.operator for i in inds} >= {"member", "crossover"}
        assert all(i.fitness is not None and (i.task_scores or {}).keys() == {"tiny_mc"} for i in inds)
        assert len(store.lineage.example_scores()[0]) == 30  # per-document scores kept for niches and racing


def test_unknown_lm_eval_task_is_one_line(task_dir, tmp_path):
    from evo_merge.fitness.tasks import load_task

    with pytest.raises(EvoMergeError, match="lm-eval task 'no_such_task'"):
        load_task(spec_file(tmp_path, task_dir, "no_such_task"))
    bad = tmp_path / "both.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "dataset": {"path": "x.jsonl"}, "lm_eval": {"task": "tiny_mc"}}))
    with pytest.raises(EvoMergeError, match="either dataset .* or lm_eval"):
        load_task(bad)


def test_rows_of_an_lm_eval_task_are_shown_through_its_own_templates(task_dir, tmp_path):
    """`evo-merge eval` and the flat-task warning show lm-eval documents with the task's
    doc_to_text / doc_to_target (choices by name), whatever the dataset's fields are called
    (here ctx / endings / gold: no 'question' or 'answer' field)."""
    import json
    from types import SimpleNamespace

    from evo_merge.evaluate import evaluate
    from evo_merge.fitness.checks import flat_task_warnings
    from evo_merge.fitness.tasks import load_task

    docs = [{"ctx": f"{i % 10}:{i // 10}=", "endings": ["1", "2", "3", "4"], "gold": i % 4} for i in range(60)]
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "ends.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "tiny_ends.yaml").write_text(
        f"task: tiny_ends\ndataset_path: json\ndataset_kwargs:\n  data_files: {{test: {folder / 'ends.jsonl'}}}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{ctx}}'\ndoc_to_choice: '{{endings}}'\n"
        "doc_to_target: '{{gold}}'\nmetric_list:\n  - {metric: acc, aggregation: mean, higher_is_better: true}\n")
    model, tok = factories.make_arch_model("llama").eval(), factories.make_tokenizer()
    for name, include in (("tiny_ends", folder), ("tiny_gen", task_dir)):
        spec = spec_file(tmp_path, include, name)
        (res,) = evaluate(model, tok, [spec], ["fitness"], 16, show=3)
        task = load_task(spec)
        for (prompt, prediction, answer, _), row in zip(res.samples, task.fitness):
            assert prompt == row["ctx" if name == "tiny_ends" else "question"]
            assert answer == (row["endings"][row["gold"]] if name == "tiny_ends" else row["answer"])
            assert prediction.strip("'") in (row["endings"] if name == "tiny_ends" else [prediction.strip("'")])
        same = [SimpleNamespace(task_scores={name: 0.5}, predictions={name: [[(-1.0, False)] * 4] * 3}
                                if name == "tiny_ends" else {name: [["7"]] * 3})] * 2
        (warning,) = flat_task_warnings([task], same)
        assert repr(task.fitness[0]["ctx" if name == "tiny_ends" else "question"]) in warning


def test_eval_of_a_group_gives_each_tasks_score(task_dir, tmp_path):
    from evo_merge.evaluate import evaluate

    model, tok = factories.make_arch_model("llama").eval(), factories.make_tokenizer()
    (res,) = evaluate(model, tok, [spec_file(tmp_path, task_dir, "tiny_group")], ["test"], 16, show=2)
    assert set(res.by_task) == {"tiny_mc_a", "tiny_mc_b"} and sum(n for _, n in res.by_task.values()) == res.rows == 20
    assert sum(s * n for s, n in res.by_task.values()) / res.rows == pytest.approx(res.score)
