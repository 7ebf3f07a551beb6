"""The machine and the user stopping a run: a device the machine lacks, Ray's errors and
interface, bad command lines, read-only and full disks, Ctrl-C, task data changed under a
stopped run, a killed export's leftovers. Each: one line naming the problem (exit 2, or
130 for Ctrl-C), and a run that resumes once the cause is fixed."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys

import pytest

import factories
from test_cli_errors import assert_one_line_error, edit_config, snapshot


def test_a_device_the_machine_lacks_is_refused_before_ray_starts(cli, existing_run, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("evo_merge.pool.ray_pool.RayExecutor.__init__",
                        lambda *a, **k: pytest.fail("Ray started before the device was checked"))
    _, cfg, _ = existing_run
    bad = edit_config(cfg, tmp_path, lambda d: d.update(pool={"backend": "ray", "workers": 1, "gpus_per_worker": 1},
                                                        eval={"device": "cuda"}))
    assert_one_line_error(*cli("run", bad, "--out", tmp_path / "r"), "no CUDA GPU is available")
    bad = edit_config(cfg, tmp_path, lambda d: d.update(pool={"backend": "ray", "address": "auto"},
                                                        eval={"device": "cuda"}))
    assert_one_line_error(*cli("run", bad, "--out", tmp_path / "r"), "pool.gpus_per_worker is 0")
    assert not (tmp_path / "r").exists()


def test_ray_errors_reach_the_user_without_colour_codes():
    from evo_merge.pool.ray_pool import _first_line

    assert _first_line(RuntimeError("\x1b[36mray::WorkerActor.run()\x1b[39m failed\ntraceback")) == \
        "ray::WorkerActor.run() failed"


def test_usage_errors_are_one_line(cli, tmp_path):
    assert_one_line_error(*cli("run", tmp_path / "c.yaml", "--bogus"), "No such option: --bogus")
    assert_one_line_error(*cli("frobnicate"), "No such command")


def test_an_unusable_output_path_is_one_line(cli, existing_run, tmp_path):
    _, cfg, _ = existing_run
    long = tmp_path / ("x" * 300) / "run"
    assert_one_line_error(*cli("run", cfg, "--out", long), "File name too long")


def _interrupt_at(monkeypatch, method: str, call: int, exc: BaseException) -> None:
    """Raise ``exc`` at the call-th call of LineageDB.<method> (an event, not a moment)."""
    from evo_merge.store.lineage import LineageDB

    original, calls = getattr(LineageDB, method), []

    def wrapped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise exc
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LineageDB, method, wrapped)


def test_a_read_only_disk_while_the_members_are_scored_leaves_no_run(cli, tiny_full, tmp_path, monkeypatch):
    cfg = factories.write_run_config(tmp_path, tiny_full, factories.write_task(tmp_path), generations=1)
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, "add", 1, OSError(errno.EROFS, os.strerror(errno.EROFS), str(out / "weights")))
    assert_one_line_error(*cli("run", cfg, "--out", out), f"Read-only file system: {out / 'weights'}")
    assert not out.exists()


@pytest.mark.parametrize("exc, pattern, code", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left on device", 2),
    (sqlite3.OperationalError("database or disk is full"), "cannot be written (database or disk is full)", 2),
    (KeyboardInterrupt(), "interrupted at generation 1; continue with: evo-merge resume", 130),
])
def test_a_run_stopped_by_the_machine_or_ctrl_c_says_so_in_one_line_and_resumes(
        exc, pattern, code, cli, tiny_full, tmp_path, monkeypatch):
    task = factories.write_task(tmp_path)
    cfg = factories.write_run_config(tmp_path, tiny_full, task, generations=2)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at(m, "set_population", 2, exc)  # generation 0 closed; fails as generation 1 closes
        got, stdout, err = cli("run", cfg, "--out", out)
    assert got == code, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and pattern in lines[0] and "Traceback" not in err, err
    code, _, err = cli("resume", out)
    assert code == 0, err
    from evo_merge.store import RunStore

    with RunStore.open(out) as store:
        assert store.lineage.meta("status") == "finished" and store.lineage.last_generation() == 2


def test_resume_refuses_changed_task_data(cli, tiny_full, tmp_path, monkeypatch):
    task = factories.write_task(tmp_path)
    cfg = factories.write_run_config(tmp_path, tiny_full, task, generations=2)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at(m, "set_population", 2, KeyboardInterrupt())
        assert cli("run", cfg, "--out", out)[0] == 130
    data = out / "inputs" / "tasks" / "0" / "tiny.jsonl"  # the run reads its own copy (test_self_contained.py)
    data.write_text(data.read_text().replace('"answer": "0"', '"answer": "1"'))
    before = snapshot(out)
    assert_one_line_error(*cli("resume", out), "task tiny's spec or data changed")
    assert snapshot(out) == before


def test_a_killed_exports_leftovers_are_removed(cli, existing_run, tmp_path):
    run_dir, _, _ = existing_run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out-{dead.stdout.strip()}-deadbeef.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    mine = tmp_path / f".out-{os.getpid()}-cafecafe.tmp"  # a live process's: kept
    mine.mkdir()
    code, _, err = cli("export", run_dir, tmp_path / "out", "--best")
    assert code == 0, err
    assert not stale.exists() and mine.exists() and (tmp_path / "out").is_dir()


def test_a_local_ray_instance_listens_on_loopback_only(existing_run, monkeypatch):
    """A Ray instance that evo-merge starts itself binds 127.0.0.1 (token auth stays Ray's default: on)."""
    import ray

    from evo_merge.config import PoolConfig
    from evo_merge.errors import EvoMergeError
    from evo_merge.pool.ray_pool import RayExecutor

    seen = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    with pytest.raises(EvoMergeError, match="cannot start or join Ray"):
        RayExecutor(None, PoolConfig(backend="ray", workers=2))
    assert seen["_node_ip_address"] == "127.0.0.1" and seen["address"] is None
    assert "_system_config" not in seen  # nothing that turns authentication off
