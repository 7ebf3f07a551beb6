"""Replay racing settings on full-scoring runs: which offspring each would have scored in full.

    python benchmarks/racing_replay.py                  # targets A, B, C, seeds 0-3: about 3 min

Runs configs/demo.yaml with full scoring (local pool), then, for every generation, takes the
offspring scored on all 200 fitness rows and replays successive halving on them (stages in
rows, in the order racing scores them; the fittest ``keep`` share on the rows so far goes
on, ties to the earlier). Reports, per setting, the share of the offspring that survived in
the full-scoring run which the setting would have scored in full (so that they could
survive), and the fitness rows per offspring it would have scored. It reads fitness rows
only, never the test split: settings can be chosen with it before test scores are seen.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

from evo_merge.config import load_run_config
from evo_merge.runner import execute, prepare
from evo_merge.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"halving [50, 100, 200] keep 0.5 (the default)": ([50, 100, 200], 0.5),
            "halving [50, 100, 200] keep 0.6": ([50, 100, 200], 0.6),
            "two stages [50, 200] keep 0.4": ([50, 200], 0.4),
            "two stages [50, 200] keep 0.5": ([50, 200], 0.5)}


def generations(run: Path):
    """Per generation: its offspring (crossovers, mutations) and those that survived, with per-row scores."""
    with RunStore.open(run) as store:
        lin = store.lineage
        scores, inds = lin.example_scores(), lin.all()
        for g in [x["generation"] for x in lin.generations()][1:]:
            survived = set(lin.population(g))
            offspring = [i.id for i in inds if i.generation == g and i.operator in ("crossover", "composition")
                         and (i.params or {}).get("origin") != "search"]
            if offspring:
                yield offspring, [i for i in offspring if i in survived], scores


def replay(offspring: list[int], scores: dict, stages: list[int], keep: float) -> tuple[list[int], int]:
    active, rows, done = list(offspring), 0, 0
    for stage in stages:
        rows += len(active) * (stage - done)
        done = stage
        if stage == stages[-1]:
            break
        ranked = sorted(active, key=lambda i: (-scores[i][:stage].mean(), i))
        active = sorted(ranked[:max(1, math.ceil(keep * len(ranked)))])
    return active, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--targets", default="a,b,c")
    args = parser.parse_args()
    kept: dict[str, list[float]] = {name: [] for name in SETTINGS}
    per_offspring: dict[str, list[float]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets.split(","):
            prepared = None
            for seed in (int(s) for s in args.seeds.split(",")):
                out = Path(tmp) / f"{target}-{seed}"
                cfg = load_run_config(ROOT / "configs" / "demo.yaml", {
                    "out": str(out), "seed": seed, "pool.backend": "local",
                    "tasks": [{"spec": str(ROOT / "fitness" / f"hard-{target}.yaml")}]})
                prepared = prepared or prepare(cfg)
                execute(cfg, prepared=prepared)
                for offspring, survived, scores in generations(out):
                    for name, (stages, keep) in SETTINGS.items():
                        full, rows = replay(offspring, scores, stages, keep)
                        if survived:
                            kept[name].append(len(set(full) & set(survived)) / len(survived))
                        per_offspring[name].append(rows / len(offspring))
    print("| setting | survivors of full scoring it scores in full | fitness rows per offspring |")
    print("|---|---|---|")
    for name in SETTINGS:
        print(f"| {name} | {100 * np.mean(kept[name]):.0f} % | {np.mean(per_offspring[name]):.0f} |")


if __name__ == "__main__":
    main()
