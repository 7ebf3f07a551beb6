"""Racing against full scoring on the hard benchmark: rows of the fitness set scored per run,
and the held-out test score of the evolved best.

    python benchmarks/racing.py                 # 6 seeds, 4 scorings, 3 targets: about 20 min
    python benchmarks/racing.py --seeds 0,1,2,3,4,5,6,7,8,9,10,11 \
        --variants full,offspring-only,search-only,two-stage   # where racing's rows and points go

configs/demo.yaml (local pool) on targets A, B and C, each seed with full scoring and with
each racing setting (``VARIANTS``; the first named is the reference). Rows scored = every
individual's fitness rows (all of them, or where racing stopped it) plus every search
candidate's.
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
        told = sum(c["rows"] if c["rows"] is not None else per_individual for s in store.lineage.searches()
                   for c in store.lineage.search_candidates(s["id"]) if c["told"] is not None)
    return inds + told


VARIANTS: dict[str, dict | None] = {
    "full": None,
    # the default: the run's selection decides, rows where the population differs first
    "survival": {"rule": "survival", "order": "informative", "search": "first_stage"},
    "survival-given": {"rule": "survival", "order": "given", "search": "first_stage"},
    "halving-informative": {"rule": "halving", "order": "informative", "search": "first_stage"},
    # the rules as first measured (rows in the given order)
    "hoeffding": {"rule": "hoeffding", "order": "given", "search": "race"},
    "estimate": {"rule": "estimate", "order": "given", "search": "race"},
    "halving": {"rule": "halving", "order": "given", "search": "first_stage"},
    # where the rows are saved: offspring only, search candidates only, and two stages
    "offspring-only": {"rule": "halving", "order": "given", "search": "full"},
    "search-only": {"rule": "halving", "order": "given", "keep": 1.0, "search": "first_stage"},
    "two-stage": {"rule": "halving", "order": "given", "stages": [0.25, 1.0], "keep": 0.4, "search": "first_stage"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--targets", default="a,b,c")
    parser.add_argument("--variants", default="full,hoeffding,estimate,halving",
                        help=f"scorings to run, from {', '.join(VARIANTS)}; the first is the reference")
    args = parser.parse_args()
    variants = args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    table: dict[tuple[str, str], list[tuple[float, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets.split(","):
            for variant in variants:
                racing = VARIANTS[variant]
                settings = {f"evolution.racing.{k}": v for k, v in (racing or {}).items()}
                prepared = None
                for seed in seeds:
                    out = Path(tmp) / f"{target}-{variant}-{seed}"
                    cfg = load_run_config(ROOT / "configs" / "demo.yaml", {
                        "out": str(out), "seed": seed, "pool.backend": "local",
                        "evolution.racing.enabled": racing is not None, **settings,
                        "tasks": [{"spec": str(ROOT / "fitness" / f"hard-{target}.yaml")}]})
                    prepared = prepared or prepare(cfg)
                    rows = {r["name"]: r for r in execute(cfg, prepared=prepared).rows}
                    full = sum(len(t.fitness) for t, _ in prepared.tasks)
                    scored = rows_scored(out, full)
                    table.setdefault((target, variant), []).append((rows["evolved best"]["test"], scored))
                    print(f"hard-{target} {variant} seed {seed}: test {rows['evolved best']['test']:.3f}, "
                          f"{scored:,} rows", flush=True)
                    shutil.rmtree(out)
    print(f"\n| target | scoring | held-out test (mean ± std, {len(seeds)} seeds) | vs {variants[0]} (± its "
          f"standard error, paired by seed) | rows scored per run | fewer than {variants[0]} |")
    print("|---|---|---|---|---|---|")
    for target in args.targets.split(","):
        ref = np.array([t for t, _ in table[(target, variants[0])]])
        ref_rows = np.mean([r for _, r in table[(target, variants[0])]])
        for variant in variants:
            tests = np.array([t for t, _ in table[(target, variant)]])
            rows = np.mean([r for _, r in table[(target, variant)]])
            diff = 100 * (tests - ref)
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            print(f"| hard-{target} | {variant} | {tests.mean():.3f} ± {tests.std(ddof=1):.3f} | "
                  f"{diff.mean():+.1f} pts (± {se:.1f}) | {rows:,.0f} | {ref_rows / rows:.2f} x |")


if __name__ == "__main__":
    main()
