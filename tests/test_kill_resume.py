"""SIGKILL a real `evo-merge run` process at seeded kill points (events, not moments), resume each with
`evo-merge resume`, and compare with an uninterrupted run: same individuals (weight
hashes), lineage, fitness, searches and results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from resume_harness import write_config
from signatures import signature

pytestmark = pytest.mark.slow  # SIGKILLs ten runs and resumes each: about 2 minutes on 2 cores

KILLS = {"commit": 6, "weights": 4}  # kill points per kind, drawn with a fixed seed
HERE = Path(__file__).resolve().parent


def start(point: str, k: int, count_file: Path, *args: str) -> subprocess.Popen:
    """The CLI, SIGKILLed at the k-th time it reaches ``point`` (tests/killpoints.py; k = 0: never)."""
    env = {**os.environ, "COLUMNS": "120", "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(HERE / "killpoints.py"), point, str(k), str(count_file),
                             *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def finish(proc: subprocess.Popen, timeout: float = 600) -> bytes:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()
    return err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run and how often it reached each kill point."""
    tmp = tmp_path_factory.mktemp("kill")
    cfg = write_config(tmp)
    out, counts = tmp / "whole", tmp / "counts.json"
    finish(start("commit", 0, counts, "run", cfg, "--out", out))
    return tmp, cfg, out, json.loads(counts.read_text())


def test_sigkill_at_seeded_kill_points_then_resume_equals_uninterrupted(reference):
    tmp, cfg, whole, counts = reference
    expected = signature(whole)
    rng = np.random.default_rng(2026)
    cuts = [(point, int(k)) for point, n in KILLS.items()
            for k in sorted(rng.choice(np.arange(1, counts[point] + 1), size=n, replace=False))]
    for point, k in cuts:
        out = tmp / f"cut-{point}-{k}"
        proc = start(point, k, tmp / "c.json", "run", cfg, "--out", out)
        proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL, f"{point} {k}: not killed"
        resume = start(point, 0, tmp / "c.json", "resume", out)
        _, err = resume.communicate(timeout=600)
        if b"config was never recorded" in err:  # killed at the very first write: start again
            assert (point, k) == ("commit", 1), err.decode()
            shutil.rmtree(out)
            finish(start(point, 0, tmp / "c.json", "run", cfg, "--out", out))
        else:
            assert resume.returncode == 0, err.decode()
        assert signature(out) == expected, f"killed at {point} {k}"
        shutil.rmtree(out)
