"""benchmarks/gpu.py runs end to end at a tiny shape on CPU, so CI exercises the GPU benchmark."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_at_a_tiny_shape_on_cpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--shape", "tiny", "--device", "cpu",
                           "--samples", "16", "--tokens", "32", "--gen-batch", "4", "--gen-tokens", "4",
                           "--individuals", "3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for row in ("offspring", "MC scoring forward", "greedy generation", "multi-LoRA scoring", "memory"):
        assert re.search(rf"^{re.escape(row)}.*\d", out, re.M), out
    assert re.search(r"(\d+\.\d+)x the read-2-write-1 floor", out)
