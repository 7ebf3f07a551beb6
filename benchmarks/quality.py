"""The quality table: every method of a compare config, its targets and seeds.

    python benchmarks/quality.py                                  # the hard benchmark
    python benchmarks/quality.py configs/compare-skills.yaml      # the skills population

It is ``evo-merge compare CONFIG`` with its outputs kept in the repository under
``benchmarks/quality/<config stem>/`` and the run directories in a temporary folder.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from evo_merge.compare import run_comparison
from evo_merge.config import load_compare_config

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "configs" / "compare-hard.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_compare_config(path, {"out": str(Path(tmp) / "runs")})
        start = time.perf_counter()
        dest = ROOT / "benchmarks" / "quality" / path.stem
        shutil.rmtree(dest, ignore_errors=True)
        result = run_comparison(cfg, dest, progress=lambda msg: print(f"[{time.perf_counter() - start:6.0f}s] {msg}",
                                                                      flush=True),
                                title=f"{path.stem}: held-out test score, mean ± std over seeds {cfg.seeds}")
        print((dest / "compare.md").read_text())
        if result.sweep:
            print((dest / "sweep.md").read_text())
        print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
