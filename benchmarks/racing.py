"""Racing against full scoring on the hard benchmark: rows of the fitness set scored per run,
and the held-out test score of the evolved best.

    python benchmarks/racing.py --seeds 0,1,2

configs/demo.yaml (local pool) on targets A, B and C, each seed once with racing off and
once on. Rows scored = every individual's fitness rows (all of them, or where racing
stopped it) plus every search candidate's (all of them).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from evo_merge.config import load_run_config
from evo_merge.runner import execute, prepare
from evo_merge.store import RunStore

ROOT = Path(__file__).resolve().parent.parent


def rows_scored(run_dir: Path, per_individual: int) -> int:
    with RunStore.open(run_dir) as store:
        inds = sum(i.fitness_rows if i.fitness_rows is not None else per_individual for i in store.lineage.all())
        told = sum(1 for s in store.lineage.searches() for c in store.lineage.search_candidates(s["id"])
                   if c["told"] is not None)
    return inds + told * per_individual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--targets", default="a,b,c")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets.split(","):
            prepared = {}
            for racing in (False, True):
                for seed in seeds:
                    out = Path(tmp) / f"{target}-{racing}-{seed}"
                    cfg = load_run_config(ROOT / "configs" / "demo.yaml", {
                        "out": str(out), "seed": seed, "pool.backend": "local", "evolution.racing.enabled": racing,
                        "tasks": [{"spec": str(ROOT / "fitness" / f"hard-{target}.yaml")}]})
                    prepared.setdefault(racing, prepare(cfg))
                    rows = {r["name"]: r for r in execute(cfg, prepared=prepared[racing]).rows}
                    full = sum(len(t.fitness) for t, _ in prepared[racing].tasks)
                    table.setdefault((target, racing), []).append((rows["evolved best"]["test"], rows_scored(out, full)))
                    shutil.rmtree(out)
    print("| target | scoring | held-out test (mean ± std) | rows scored per run | vs full |")
    print("|---|---|---|---|---|")
    for target in args.targets.split(","):
        full_rows = np.mean([r for _, r in table[(target, False)]])
        for racing in (False, True):
            tests = np.array([t for t, _ in table[(target, racing)]])
            rows = np.mean([r for _, r in table[(target, racing)]])
            print(f"| hard-{target} | {'racing' if racing else 'full'} | {tests.mean():.3f} ± {tests.std(ddof=1):.3f} | "
                  f"{rows:,.0f} | {full_rows / rows:.2f} x fewer |")


if __name__ == "__main__":
    main()
