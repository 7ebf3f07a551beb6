"""SIGKILL a real `evo-merge run` process at seeded random moments, resume each with
`evo-merge resume`, and compare with an uninterrupted run: same individuals (weight
hashes), lineage, fitness, searches and results."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from resume_harness import write_config
from signatures import signature

KILLS = 10
BIN = Path(sys.executable).parent / "evo-merge"


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.Popen([str(BIN), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and when its database appeared and when it ended."""
    tmp = tmp_path_factory.mktemp("kill")
    cfg = write_config(tmp)
    out = tmp / "whole"
    t0 = time.perf_counter()
    proc = start("run", cfg, "--out", out)
    first_record = None
    while proc.poll() is None:
        if first_record is None and (out / "lineage.sqlite").exists():
            first_record = time.perf_counter() - t0
        time.sleep(0.02)
    finish(proc)
    return tmp, cfg, out, first_record or 0.0, time.perf_counter() - t0


def test_sigkill_at_seeded_moments_then_resume_equals_uninterrupted(reference):
    tmp, cfg, whole, first_record, total = reference
    expected = signature(whole)
    # seconds after the run's database appears: from the members' scoring to the report
    moments = np.random.default_rng(2026).uniform(0.0, 0.9 * (total - first_record), KILLS)
    interrupted = 0
    for k, moment in enumerate(moments):
        out = tmp / f"cut{k}"
        proc = start("run", cfg, "--out", out)
        while proc.poll() is None and not (out / "lineage.sqlite").exists():
            time.sleep(0.01)
        time.sleep(moment)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            interrupted += 1
        else:
            finish(proc)
        if not (out / "lineage.sqlite").exists():  # killed before anything was recorded: start again
            shutil.rmtree(out, ignore_errors=True)
            finish(start("run", cfg, "--out", out))
        else:
            resume = start("resume", out)
            _, err = resume.communicate(timeout=300)
            assert resume.returncode == 0 or b"already finished" in err, err.decode()
        assert signature(out) == expected, f"kill {k} at {moment:.2f}s"
        shutil.rmtree(out)
    assert interrupted >= KILLS - 2, f"only {interrupted} of {KILLS} runs were killed before they finished"
