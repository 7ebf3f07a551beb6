"""Hostile input: metrics that raise, foreign databases, path tricks in stored data, YAML
bombs, values a config must not hold, pickle-only adapters. Each: one line naming the
problem (exit 2), and no run directory half made or changed. The machine's errors and
Ctrl-C are in test_machine_errors.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

import factories
from test_cli_errors import assert_one_line_error, edit_config, population_with, snapshot


def raw(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("body, pattern", [
    ("raise ZeroDivisionError('boom')", "raised ZeroDivisionError: boom"),
    ("return ['x'] * len(examples)", "must return numbers"),
    ("return [1.0]", "returned 1 scores for"),
    ("return [float('nan')] * len(examples)", "NaN or infinite"),
])
def test_a_metric_that_fails_leaves_no_run_directory(body, pattern, cli, tiny_full, tmp_path, monkeypatch):
    module = f"badmetric_{abs(hash(body))}"  # one module per case (imports are cached)
    (tmp_path / f"{module}.py").write_text(f"def fn(model, tokenizer, examples):\n    {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    task = factories.write_task(tmp_path, metric=f"{module}:fn")
    cfg = factories.write_run_config(tmp_path, tiny_full, task, generations=1)
    out = tmp_path / "mine"
    out.mkdir()  # the user's own empty folder stays, empty
    assert_one_line_error(*cli("run", cfg, "--out", out), pattern)
    assert out.is_dir() and not any(out.iterdir())
    assert_one_line_error(*cli("run", cfg, "--out", tmp_path / "new"), pattern)
    assert not (tmp_path / "new").exists()


def test_a_foreign_sqlite_file_is_refused_and_left_alone(cli, tmp_path):
    run = tmp_path / "notarun"
    run.mkdir()
    conn = sqlite3.connect(run / "lineage.sqlite")
    conn.execute("CREATE TABLE notes (x TEXT)")
    conn.commit()
    conn.close()
    before = raw(run / "lineage.sqlite")
    for args in (["status", run], ["resume", run], ["export", run, tmp_path / "x", "--best"], ["gc", run]):
        assert_one_line_error(*cli(*args), "not an evo-merge lineage database")
    assert raw(run / "lineage.sqlite") == before
    assert sorted(p.name for p in run.iterdir()) == ["lineage.sqlite"]


def test_readers_never_write_to_the_database(cli, existing_run, tmp_path):
    run_dir, _, _ = existing_run
    db = run_dir / "lineage.sqlite"
    before, mtime = raw(db), db.stat().st_mtime_ns
    for args in (["status", run_dir], ["lineage", run_dir, "0"], ["export", run_dir, tmp_path / "e", "--best"]):
        code, out, err = cli(*args)
        assert code == 0, err
    assert raw(db) == before and db.stat().st_mtime_ns == mtime


def test_a_weights_hash_from_the_database_cannot_leave_the_run(cli, existing_run, tmp_path):
    import shutil

    run_dir, _, _ = existing_run
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    conn = sqlite3.connect(run / "lineage.sqlite")
    conn.execute("UPDATE individuals SET weights = '../../../../etc/passwd' WHERE id = 0")
    conn.commit()
    conn.close()
    before = snapshot(run)
    assert_one_line_error(*cli("export", run, tmp_path / "out", "--id", "0"), "invalid weights hash")
    assert snapshot(run) == before and not (tmp_path / "out").exists()


def test_gc_never_deletes_outside_the_run(cli, existing_run, tmp_path):
    import shutil

    run_dir, _, _ = existing_run
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"keep me")
    conn = sqlite3.connect(run / "lineage.sqlite")
    conn.execute("UPDATE individuals SET weights = '../../victim' WHERE id = 1")
    conn.commit()
    conn.close()
    before = snapshot(run)
    assert_one_line_error(*cli("gc", run), "invalid weights hash")
    assert victim.read_bytes() == b"keep me" and snapshot(run) == before


def test_the_weight_store_refuses_anything_but_a_hash(tmp_path):
    from evo_merge.errors import EvoMergeError
    from evo_merge.store.weights import WeightStore

    store = WeightStore(tmp_path / "weights")
    for bad in ("../x", "/etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/..", None):
        with pytest.raises(EvoMergeError, match="invalid weights hash"):
            store.path(bad)
    assert store.path("0" * 64).parent == tmp_path / "weights"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefg", "bcdefgh"))


@pytest.mark.parametrize("edit, pattern", [
    (lambda d: d.update(seed=-1), "seed"),
    (lambda d: d["evolution"].update(mutation={"rate": 0.5, "sigma": float("inf")}), "sigma"),
    (lambda d: d["evolution"].update(mutation={"rate": float("nan")}), "rate"),
    (lambda d: d["evolution"].update(succession={"enabled": True, "phi_social": float("nan")}), "phi_social"),
    (lambda d: d["tasks"][0].update(weight=float("inf")), "weight"),
    (lambda d: d["evolution"].update(population_size=2, crossover={"num_parents": 3}), "num_parents"),
    (lambda d: d["evolution"].update(crossover={"coefficients": "given", "given": [0.5, float("nan")]}), "given"),
])
def test_values_a_config_must_not_hold(edit, pattern, cli, existing_run, tmp_path):
    _, cfg, _ = existing_run
    assert_one_line_error(*cli("run", edit_config(cfg, tmp_path, edit), "--out", tmp_path / "r"), pattern)
    assert not (tmp_path / "r").exists()


def _task_with(tmp_path: Path, rows=None, **spec) -> Path:
    path = factories.write_task(tmp_path)
    data = yaml.safe_load(path.read_text())
    data.update(spec)
    path.write_text(yaml.safe_dump(data))
    if rows is not None:
        (tmp_path / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows_without_question(tmp_path: Path) -> list[dict]:
    factories.write_task(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "tiny.jsonl").read_text().splitlines()]
    rows[7].pop("question")
    return rows


@pytest.mark.parametrize("make, pattern", [
    (lambda tp: _task_with(tp, test_samples=0), "test_samples"),
    (lambda tp: _task_with(tp, prompt="{question.upper}"), "only plain field names"),
    (lambda tp: _task_with(tp, prompt="{question[0]}"), "only plain field names"),
    (lambda tp: _task_with(tp, rows=_rows_without_question(tp)), "question"),
])
def test_task_specs_and_rows_a_run_must_not_take(make, pattern, cli, tiny_full, tmp_path):
    cfg = factories.write_run_config(tmp_path, tiny_full, make(tmp_path), generations=1)
    assert_one_line_error(*cli("run", cfg, "--out", tmp_path / "r"), pattern)
    assert not (tmp_path / "r").exists()


def test_a_yaml_bomb_is_refused_before_it_is_built(cli, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert_one_line_error(*cli("run", bomb), "expand")
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (2 << 20) + "\n")
    assert_one_line_error(*cli("run", big), "at most")


def test_a_pickle_only_adapter_is_refused(cli, tiny_lora, tmp_path):
    def to_pickle_name(member: Path) -> None:
        (member / "adapter_model.safetensors").rename(member / "adapter_model.bin")

    pop = population_with(tmp_path, tiny_lora, to_pickle_name)
    cfg = factories.write_run_config(tmp_path, pop, factories.write_task(tmp_path), generations=1)
    assert_one_line_error(*cli("run", cfg, "--out", tmp_path / "r"), "safetensors")
    assert not (tmp_path / "r").exists()


def test_peft_loading_reads_safetensors_only(tiny_lora, tmp_path, monkeypatch):
    """The adapter is loaded from the safetensors file this project found; torch.load is never called."""
    import torch
    from transformers import AutoModelForCausalLM

    from evo_merge.lora_members import peft_model

    spec = yaml.safe_load(tiny_lora.read_text())
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    model = peft_model(AutoModelForCausalLM.from_pretrained(spec["base_model"]), Path(spec["members"][0]["path"]))
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in model.named_parameters())


def test_a_sharded_adapter_next_to_a_pickle_loads_from_safetensors(tiny_lora, tmp_path, monkeypatch):
    """PEFT's own loader would take adapter_model.bin here (its safetensors file has a shard's name)."""
    import torch
    from transformers import AutoModelForCausalLM

    from evo_merge.lora_members import peft_model

    spec = yaml.safe_load(tiny_lora.read_text())
    member = tmp_path / "sharded"
    member.mkdir()
    for f in Path(spec["members"][0]["path"]).iterdir():
        name = "adapter_model-00001-of-00001.safetensors" if f.name == "adapter_model.safetensors" else f.name
        (member / name).write_bytes(f.read_bytes())
    (member / "adapter_model.bin").write_bytes(b"not a pickle you want to load")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    model = peft_model(AutoModelForCausalLM.from_pretrained(spec["base_model"]), member)
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in model.named_parameters())
