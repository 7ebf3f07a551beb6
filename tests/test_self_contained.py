"""A run directory does not depend on files outside it that can change: it keeps its own copy of
the population and task specs (and small task data), records the identity of its base and members,
and export, replay, eval RUN:ID and resume work from that copy alone (issue "From the demo to your
own models")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import factories
from evo_merge.config import load_run_config
from evo_merge.model_identity import model_digest
from evo_merge.runner import execute
from evo_merge.store import RunStore
from test_cli_errors import assert_one_line_error, snapshot
from test_machine_errors import _interrupt_at

BUILD = '''
def build(out, seed=0):
    import factories

    factories.write_population(out, "lora")
    (out / "manifest.json").write_text("{}")  # what marks a finished build
'''
EVO = {"population_size": 4, "mutation": {"rate": 1.0}, "crossover": {"rate": 1.0, "slots": 1}}


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run of a built LoRA population (built into cache c1), copied alone to another place; its
    config, population spec, build script, task spec and data are deleted. (run copy, c1)"""
    root = tmp_path_factory.mktemp("self_contained")
    src, cache = root / "src", root / "c1"
    src.mkdir()
    (src / "build_tiny.py").write_text(BUILD)
    spec = {"name": "built", "kind": "lora", "build": {"script": "build_tiny.py"}, "base_model": "{build_dir}/base",
            "members": [{"name": f"m{i}", "path": f"{{build_dir}}/lora{i}"} for i in range(3)]}
    (src / "pop.yaml").write_text(yaml.safe_dump(spec))
    cfg = factories.write_run_config(src, src / "pop.yaml", factories.write_task(src), generations=1, **EVO)
    with pytest.MonkeyPatch.context() as m:
        m.setenv("EVO_MERGE_CACHE", str(cache))
        run = execute(load_run_config(cfg)).run_dir
    moved = root / "elsewhere" / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(src)
    return moved, cache


def _child(run: Path, operator: str = "crossover"):
    with RunStore.open(run) as store:
        return next(i for i in store.lineage.all() if i.operator == operator)


def test_the_run_keeps_its_inputs_and_the_identity_of_its_models(moved_run):
    run, cache = moved_run
    inputs = run / "inputs"
    assert yaml.safe_load((inputs / "population.yaml").read_text())["base_model"] == "{build_dir}/base"
    record = json.loads((inputs / "population.lock.json").read_text())
    built = next(cache.iterdir())
    assert record["base"]["ref"] == "{build_dir}/base" and record["base"]["path"] == str((built / "base").resolve())
    for i in range(3):
        member = record["members"][f"m{i}"]
        assert member["hub"] is None and member["digest"] == model_digest(built / f"lora{i}")
    manifest = json.loads((inputs / "manifest.json").read_text())
    assert manifest["tasks"][0]["copy"] == "tasks/0/tiny.yaml" and manifest["tasks"][0]["self_contained"]
    assert (inputs / "tasks" / "0" / "tiny.jsonl").is_file()  # the spec's data, at its relative path


def test_a_moved_run_exports_replays_and_evals_without_its_specs_or_a_rebuild(moved_run, cli, tmp_path, monkeypatch):
    run, cache = moved_run
    other = tmp_path / "c2"
    monkeypatch.setenv("EVO_MERGE_CACHE", str(other))  # another cache: the demo used to be rebuilt here
    code, out, err = cli("export", run, tmp_path / "best", "--best")
    assert code == 0, err
    base = next(cache.iterdir()) / "base"
    adapter = json.loads((tmp_path / "best" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base.resolve())
    info = json.loads((tmp_path / "best" / "evo_merge_individual.json").read_text())
    assert info["base_model"] == str(base.resolve())
    child = _child(run)
    code, out, err = cli("replay", run, child.id)
    assert code == 0 and "weights equal" in " ".join(out.split()), err
    code, out, err = cli("eval", f"{run}:{child.id}", run / "inputs" / "tasks" / "0" / "tiny.yaml")
    assert code == 0 and "tiny (fitness split)" in " ".join(out.split()), err
    assert not other.exists() or not any(other.iterdir())  # nothing was built


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["members"]["m1"].update(digest="0" * 64), "member m1: "),
    (lambda r: r["members"]["m2"].update(path="/nonexistent/lora2"), "member m2: directory not found: /nonexistent"),
    (lambda r: r["base"].update(digest="0" * 64), "base model: "),
])
def test_a_model_that_is_not_the_recorded_one_is_refused(edit, message, moved_run, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(moved_run[0], run)
    lock = run / "inputs" / "population.lock.json"
    record = json.loads(lock.read_text())
    edit(record)
    lock.write_text(json.dumps(record))
    before = snapshot(run)
    child = _child(run)
    assert_one_line_error(*cli("export", run, tmp_path / "o", "--id", child.id), message)
    assert_one_line_error(*cli("eval", f"{run}:{child.id}", run / "inputs" / "tasks" / "0" / "tiny.yaml"), message)
    assert not (tmp_path / "o").exists() and snapshot(run) == before


def test_resume_reads_the_runs_own_copies_and_checks_the_members(cli, tiny_full, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    spec = src / "pop.yaml"
    shutil.copy(tiny_full, spec)  # absolute model paths: the models stay where they are
    cfg = factories.write_run_config(src, spec, factories.write_task(src), generations=2)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at(m, "set_population", 2, KeyboardInterrupt())
        assert cli("run", cfg, "--out", out)[0] == 130
    (src / "tiny.jsonl").write_text("")  # the originals change or go: the run has its own copies
    spec.unlink()
    lock = out / "inputs" / "population.lock.json"
    good = lock.read_text()
    record = json.loads(good)
    record["members"]["m0"]["digest"] = "0" * 64
    lock.write_text(json.dumps(record))
    before = snapshot(out)
    assert_one_line_error(*cli("resume", out), "member m0: ")
    assert snapshot(out) == before
    lock.write_text(good)
    code, _, err = cli("resume", out)
    assert code == 0, err
    with RunStore.open(out) as store:
        assert store.lineage.meta("status") == "finished" and store.lineage.last_generation() == 2


def test_the_digest_sees_weights_and_settings_not_paths(tmp_path, monkeypatch):
    import evo_merge.model_identity as mi

    def model_digest(path):  # uncached: files are rewritten faster than mtime may tick
        mi._cache.clear()
        return mi.model_digest(path)

    model = tmp_path / "m"
    model.mkdir()
    (model / "adapter_model.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b'{"a": 1}' + bytes(range(256)) * 64)
    (model / "adapter_config.json").write_text(json.dumps({"r": 4, "base_model_name_or_path": "/x"}))
    (model / "tokenizer.json").write_text("{}")
    first = model_digest(model)
    (model / "adapter_config.json").write_text(json.dumps({"r": 4, "base_model_name_or_path": "/elsewhere"}))
    (model / "tokenizer.json").write_text('{"other": 1}')
    assert model_digest(model) == first  # paths and tokenizer files do not count
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert model_digest(copy) == first
    monkeypatch.setattr(mi, "FULL_LIMIT", 100)  # large files: header, size and samples
    monkeypatch.setattr(mi, "SAMPLE", 16)
    sampled = model_digest(tmp_path / "copy")
    data = bytearray((copy / "adapter_model.safetensors").read_bytes())
    data[-1] ^= 1  # the last sample covers the last byte
    (copy / "adapter_model.safetensors").write_bytes(bytes(data))
    assert model_digest(copy) != sampled
    (copy / "adapter_config.json").write_text(json.dumps({"r": 8}))
    assert model_digest(copy) not in (first, sampled)


def test_a_manifest_path_leaving_the_inputs_folder_is_refused(tmp_path):
    import json as _json

    import pytest as _pytest

    from evo_merge.errors import EvoMergeError
    from evo_merge.run_inputs import INPUTS, MANIFEST, redirect_config

    inputs = tmp_path / INPUTS
    inputs.mkdir()
    (inputs / MANIFEST).write_text(_json.dumps({"population": {"copy": "../../etc/passwd"}, "tasks": []}))
    with _pytest.raises(EvoMergeError, match="leaves the run's inputs folder"):
        redirect_config(tmp_path, {"population": "p.yaml", "tasks": []})
    (inputs / MANIFEST).write_text(_json.dumps({"tasks": []}))
    with _pytest.raises(EvoMergeError, match="malformed"):
        redirect_config(tmp_path, {"population": "p.yaml", "tasks": []})
