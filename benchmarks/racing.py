"""Racing against full scoring on the hard benchmark: rows of the fitness set scored per run,
and the held-out test score of the evolved best.

    python benchmarks/racing.py                 # 6 seeds, 4 scorings, 3 targets: about 20 min

configs/demo.yaml (local pool) on targets A, B and C, each seed with full scoring and with
each racing rule (``VARIANTS``). Rows scored = every individual's fitness rows (all of
them, or where racing stopped it) plus every search candidate's.
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


VARIANTS = {"full": None,
            "hoeffding": "rule=hoeffding,search=race",
            "estimate": "rule=estimate,search=race",
            "halving": "rule=halving,search=first_stage"}


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
                pairs = (kv.split("=") for kv in (racing or "").split(",") if kv)
                settings = {f"evolution.racing.{k}": v for k, v in pairs}
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
    print(f"\n| target | scoring | held-out test (mean ± std, {len(seeds)} seeds) | vs {variants[0]} | "
          f"rows scored per run | fewer than {variants[0]} |")
    print("|---|---|---|---|---|---|")
    for target in args.targets.split(","):
        ref = table[(target, variants[0])]
        for variant in variants:
            tests = np.array([t for t, _ in table[(target, variant)]])
            rows = np.mean([r for _, r in table[(target, variant)]])
            print(f"| hard-{target} | {variant} | {tests.mean():.3f} ± {tests.std(ddof=1):.3f} | "
                  f"{100 * (tests.mean() - np.mean([t for t, _ in ref])):+.1f} pts | {rows:,.0f} | "
                  f"{np.mean([r for _, r in ref]) / rows:.2f} x |")


if __name__ == "__main__":
    main()
