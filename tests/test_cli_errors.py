"""Bad input: one line naming the problem, exit code 2, no traceback, an existing run untouched."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file



def snapshot(root: Path) -> dict[str, str]:
    """Every file's hash; the lineage database by its contents (SQLite's -wal/-shm side
    files and the lock file come and go with readers and are not data)."""
    import sqlite3

    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.endswith(("-wal", "-shm")) or p.name == ".lock":
            continue
        if p.name == "lineage.sqlite":
            conn = sqlite3.connect(p)
            data = "\n".join(conn.iterdump()).encode()
            conn.close()
        else:
            data = p.read_bytes()
        out[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


def assert_one_line_error(code, out, err, pattern):
    assert code == 2, (code, out, err)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    assert pattern in lines[0], lines[0]


def edit_config(cfg_path: Path, tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(cfg_path.read_text())
    edit(cfg)
    new = tmp_path / "bad.yaml"
    new.write_text(yaml.safe_dump(cfg))
    return new


def write_bad_task(tmp_path: Path, rows: list[dict] | None, **spec_changes) -> Path:
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in (rows or [])))
    spec = {"name": "bad", "dataset": {"path": data.name}, "prompt": "{question}", "answer_field": "answer",
            "choices_field": "choices", "metric": "mc_loglik", "fitness_samples": 10, "test_samples": 5,
            **spec_changes}
    path = tmp_path / "bad_task.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


ROWS = [{"question": f"{i}=", "choices": ["1", "2"], "answer": "1"} for i in range(30)]


def population_with(tmp_path: Path, tiny_full: Path, mutate_member) -> Path:
    """A copy of the tiny full population whose first member is altered by ``mutate_member``."""
    spec = yaml.safe_load(tiny_full.read_text())
    src = Path(spec["members"][0]["path"])
    dst = tmp_path / "member0"
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    mutate_member(dst)
    spec["members"][0]["path"] = str(dst)
    path = tmp_path / "pop.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _edit_weights(fn):
    def edit(member_dir: Path):
        f = member_dir / "model.safetensors"
        tensors = load_file(str(f))
        fn(tensors)
        save_file(tensors, str(f), metadata={"format": "pt"})
    return edit


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _nan(t):
    t["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")


def _reshape(t):
    t["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 3)


def _drop(t):
    del t["model.layers.1.mlp.up_proj.weight"]


def _other_tokenizer(member_dir: Path) -> None:
    data = json.loads((member_dir / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["A"] = vocab.pop("a")
    (member_dir / "tokenizer.json").write_text(json.dumps(data))


CASES = {
    "member tokenizer differs": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        population=str(population_with(tp, pop, _other_tokenizer)))), "tokenizer differs from the base's"),
    "malformed yaml": (lambda c, tp, pop: write(tp / "m.yaml", "seed: [1,\n"), "malformed YAML"),
    "not a mapping": (lambda c, tp, pop: write(tp / "m.yaml", "- 1\n"), "expected a YAML mapping"),
    "missing config": (lambda c, tp, pop: tp / "nope.yaml", "config file not found"),
    "unknown field": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(sedd=1)), "sedd"),
    "bad type": (lambda c, tp, pop: edit_config(c, tp, lambda d: d["evolution"].update(generations="many")), "generations"),
    "unknown method": (lambda c, tp, pop: edit_config(c, tp, lambda d: d["evolution"].update(
        crossover={"methods": [{"method": "frankenmerge"}]})), "unknown merge method 'frankenmerge'"),
    "unknown method parameter": (lambda c, tp, pop: edit_config(c, tp, lambda d: d["evolution"].update(
        crossover={"methods": [{"method": "ties", "params": {"densty": 0.5}}]})), "unknown parameter 'densty'"),
    "method parameter out of range": (lambda c, tp, pop: edit_config(c, tp, lambda d: d["evolution"].update(
        crossover={"methods": [{"method": "ties", "params": {"density": 1.5}}]})), "density must be in (0, 1]"),
    "unknown selection": (lambda c, tp, pop: edit_config(c, tp, lambda d: d["evolution"].update(
        selection={"method": "lottery"})), "unknown selection method 'lottery'"),
    "missing population": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(population=str(tp / "x.yaml"))),
                           "population spec file not found"),
    "missing task": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(tasks=[{"spec": str(tp / "t.yaml")}])),
                     "task spec file not found"),
    "empty dataset": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        tasks=[{"spec": str(write_bad_task(tp, []))}])), "dataset is empty"),
    "too few samples": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        tasks=[{"spec": str(write_bad_task(tp, ROWS[:12]))}])), "fewer than fitness_samples + test_samples"),
    "answer not a choice": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        tasks=[{"spec": str(write_bad_task(tp, [dict(r, answer="9") for r in ROWS]))}])), "not among its choices"),
    "missing field": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        tasks=[{"spec": str(write_bad_task(tp, ROWS, answer_field="label"))}])), "field 'label' not in dataset"),
    "nan weights": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        population=str(population_with(tp, pop, _edit_weights(_nan))))), "NaN"),
    "mismatched shapes": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        population=str(population_with(tp, pop, _edit_weights(_reshape))))), "has shape"),
    "mismatched architecture": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        population=str(population_with(tp, pop, _edit_weights(_drop))))), "architecture differs"),
    "pickle only member": (lambda c, tp, pop: edit_config(c, tp, lambda d: d.update(
        population=str(population_with(tp, pop, lambda m: (m / "model.safetensors").rename(m / "pytorch_model.bin"))))),
        "pickle checkpoints are not loaded"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_store_unchanged(case, cli, existing_run, tmp_path, tiny_full):
    run_dir, cfg, _ = existing_run
    before = snapshot(run_dir)
    make, pattern = CASES[case]
    bad = make(cfg, tmp_path, tiny_full)
    code, out, err = cli("run", bad, "--out", run_dir / "new")
    assert_one_line_error(code, out, err, pattern)
    assert snapshot(run_dir) == before
    assert not (run_dir / "new").exists()


def test_existing_run_directory_refused(cli, existing_run):
    run_dir, cfg, _ = existing_run
    before = snapshot(run_dir)
    code, out, err = cli("run", cfg, "--out", run_dir)
    assert_one_line_error(code, out, err, "already exists")
    assert snapshot(run_dir) == before


def test_status_and_lineage_errors(cli, existing_run, tmp_path):
    run_dir, _, _ = existing_run
    assert_one_line_error(*cli("status", tmp_path), "not a run directory")
    assert_one_line_error(*cli("lineage", run_dir, "9999"), "no individual 9999")


def test_console_script_prints_no_traceback(tmp_path):
    """The installed entry point, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "evo_merge.cli", "run", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "config file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def _unfinished(run: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(run / "lineage.sqlite")
    conn.execute("DELETE FROM meta WHERE key = 'status'")
    conn.commit()
    conn.close()


def _corrupt_a_weight_file(run: Path) -> None:
    """Flip a byte in the first offspring's first parent's weight file."""
    from evo_merge.store import RunStore

    with RunStore.open(run) as store:
        parent = store.lineage.get(store.lineage.get(_first_offspring(run)).parents[0])
        victim = store.weights.path(parent.weights)
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF
    victim.write_bytes(bytes(data))


def _first_offspring(run: Path) -> int:
    from evo_merge.store import RunStore

    with RunStore.open(run) as store:
        return next(i.id for i in store.lineage.all() if i.operator != "member")


# (prepare the run copy -> CLI args, expected message); {run} and {tmp} are filled in
STORE_CASES = {
    "resume a finished run": (lambda run, tmp: ["resume", run], "has already finished"),
    "resume a non-run directory": (lambda run, tmp: ["resume", tmp], "not a run directory"),
    "resume a run in use": (None, "in use by another evo-merge process"),
    "gc an unfinished run": (lambda run, tmp: (_unfinished(run), ["gc", run])[1], "has not finished"),
    "replay an unknown id": (lambda run, tmp: ["replay", run, "777"], "no individual 777"),
    "replay a member": (lambda run, tmp: ["replay", run, "0"], "is a member: it has no recipe"),
    "replay onto a corrupted file": (lambda run, tmp: (_corrupt_a_weight_file(run), ["replay", run, str(
        _first_offspring(run))])[1], "weight file corrupted (checksum mismatch)"),
    "export an unknown id": (lambda run, tmp: ["export", run, tmp / "out", "--id", "777"], "no individual 777"),
    "export without --id or --best": (lambda run, tmp: ["export", run, tmp / "out"], "--id"),
    "export into a non-empty directory": (lambda run, tmp: (write(tmp / "x.txt", "keep"), ["export", run, tmp,
                                                                                           "--best"])[1], "not empty"),
    "lineage with an unknown format": (lambda run, tmp: ["lineage", run, "0", "--format", "svgz"], "svgz"),
    "lineage graph without an id": (lambda run, tmp: ["lineage", run, "--format", "dot"], "give an ID"),
    "plot a non-run directory": (lambda run, tmp: ["plot", tmp], "not a run directory"),
    "candidates of a run without search": (lambda run, tmp: ["candidates", run], "no coefficient search"),
    "search resume of a missing run": (lambda run, tmp: ["search", _search_cfg(run, tmp), "--out", tmp / "none",
                                                         "--resume"], "not a run directory"),
    "search with a bad optimizer": (lambda run, tmp: ["search", _search_cfg(run, tmp, optimizer="CMAA"), "--out",
                                                      tmp / "s"], "unknown Nevergrad optimizer 'CMAA'"),
    "search with inverted bounds": (lambda run, tmp: ["search", _search_cfg(run, tmp, bounds=[2, 1]), "--out",
                                                      tmp / "s"], "lower below upper"),
    "async with a search crossover": (lambda run, tmp: ["run", _search_cfg(run, tmp, evo_search=True), "--mode",
                                                        "async", "--out", tmp / "s"], "does not run coefficient"),
    "async with racing": (lambda run, tmp: ["run", _search_cfg(run, tmp, racing=True), "--mode", "async", "--out",
                                            tmp / "s"], "races offspring one by one: set evolution.racing.rule"),
    "bad answer regex": (lambda run, tmp: ["run", _task_cfg(run, tmp, metric="exact_match", answer_regex="(["),
                                           "--out", tmp / "s"], "not a valid regular expression"),
    "metric not importable": (lambda run, tmp: ["run", _task_cfg(run, tmp, metric="no_such_module:fn"), "--out",
                                                tmp / "s"], "cannot be imported"),
}


def _search_cfg(run: Path, tmp: Path, evo_search: bool = False, racing: bool = False, **search) -> Path:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.pop("out")
    cfg["search"] = {**cfg.get("search", {}), **search}
    cfg["evolution"]["succession"]["enabled"] = False
    if evo_search:
        cfg["evolution"]["search"] = {"every": 1}
    if racing:
        cfg["evolution"]["racing"] = {"enabled": True}
    return write(tmp / "search.yaml", yaml.safe_dump(cfg))


def _task_cfg(run: Path, tmp: Path, **spec) -> Path:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.pop("out")
    cfg["tasks"] = [{"spec": str(write_bad_task(tmp, ROWS, **spec))}]
    return write(tmp / "task.yaml", yaml.safe_dump(cfg))


@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_bad_store_and_command_input_is_one_line_exit_2_and_store_unchanged(case, cli, existing_run, tmp_path):
    import shutil

    from evo_merge.store import RunStore

    run_dir, _, _ = existing_run
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    work = tmp_path / "work"
    work.mkdir()
    make, pattern = STORE_CASES[case]
    holder = None
    if make is None:  # a second process holds the run
        _unfinished(run)
        holder = RunStore.open(run, lock=True)
        args = ["resume", run]
    else:
        args = make(run, work)
    before = snapshot(run)
    try:
        code, out, err = cli(*args)
    finally:
        if holder:
            holder.close()
    assert_one_line_error(code, out, err, pattern)
    assert snapshot(run) == before
