"""The quality table: every method on the demo population's four target tasks, 3 seeds.

    python benchmarks/quality.py            # writes benchmarks/quality/{compare,sweep}.{md,csv,png}

It is ``evo-merge compare configs/compare-demo.yaml`` with its outputs kept in the
repository, plus the run directories in a temporary folder.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from evo_merge.compare import run_comparison
from evo_merge.config import load_compare_config

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_compare_config(ROOT / "configs" / "compare-demo.yaml", {"out": str(Path(tmp) / "runs")})
        start = time.perf_counter()
        dest = ROOT / "benchmarks" / "quality"
        shutil.rmtree(dest, ignore_errors=True)
        result = run_comparison(cfg, dest, progress=lambda msg: print(f"[{time.perf_counter() - start:6.0f}s] {msg}",
                                                                      flush=True),
                                title=f"demo target tasks: held-out test score, mean ± std over seeds {cfg.seeds}")
        print((dest / "compare.md").read_text())
        if result.sweep:
            print((dest / "sweep.md").read_text())
        print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
