"""Replay racing settings on full-scoring runs: which offspring each would have scored in full.

    python benchmarks/racing_replay.py                  # targets A, B, C, seeds 0-3: about 3 min

Runs configs/demo.yaml with full scoring (local pool), then, for every generation, takes the
offspring scored on all 200 fitness rows and replays racing on them: successive halving
(stages in rows; the fittest ``keep`` share on the rows so far goes on, ties to the
earlier) and the ``survival`` rule (the run's selection on the population before the
generation and the offspring, unscored rows at the population's best on them), with rows
in the given order or the informative one (rows the population disagrees on first).
Reports, per setting, the share of the offspring that survived in the full-scoring run
which the setting would have scored in full (so that they could survive), the share of
generations in which it would have scored every survivor in full, and the fitness rows per
offspring it would have scored. It reads fitness rows only, never the test split: settings
can be chosen with it before test scores are seen.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

from evo_merge.config import load_run_config
from evo_merge.operators.selection import select_survivors
from evo_merge.racing import informative_order
from evo_merge.runner import execute, prepare
from evo_merge.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"halving [50, 100, 200] keep 0.5, given order": ([50, 100, 200], 0.5, "given"),
            "halving [50, 100, 200] keep 0.6, given order": ([50, 100, 200], 0.6, "given"),
            "two stages [50, 200] keep 0.4, given order": ([50, 200], 0.4, "given"),
            "two stages [50, 200] keep 0.5, given order": ([50, 200], 0.5, "given"),
            "halving [50, 100, 200] keep 0.5, informative order": ([50, 100, 200], 0.5, "informative"),
            "survival [50, 100, 200], given order": ([50, 100, 200], "survival", "given"),
            "survival [50, 100, 200], informative order (the default)": ([50, 100, 200], "survival", "informative"),
            "survival [25, 50, 200], informative order": ([25, 50, 200], "survival", "informative")}


def generations(run: Path):
    """Per generation: the population before it, its offspring (crossovers, mutations) and
    those that survived, with per-row scores."""
    with RunStore.open(run) as store:
        lin = store.lineage
        scores, inds = lin.example_scores(), lin.all()
        for g in [x["generation"] for x in lin.generations()][1:]:
            survived = set(lin.population(g))
            offspring = [i.id for i in inds if i.generation == g and i.operator in ("crossover", "composition")
                         and (i.params or {}).get("origin") != "search"]
            if offspring:
                yield lin.population(g - 1), offspring, [i for i in offspring if i in survived], scores


def replay(before: list[int], offspring: list[int], scores: dict, stages: list[int], rule, order: str,
           evo) -> tuple[list[int], int]:
    members = np.stack([scores[i] for i in before])
    n = members.shape[1]
    rows_in = informative_order(members if order == "informative" else None, {"t": n})["t"]
    active, rows, done = list(offspring), 0, 0
    for stage in stages:
        rows += len(active) * (stage - done)
        done = stage
        if stage == stages[-1]:
            break
        if rule == "survival":
            seen = np.zeros(n, dtype=bool)
            seen[rows_in[:stage]] = True
            est = [np.where(seen, scores[i], members.max(axis=0)) for i in offspring]
            pool = np.concatenate([members, np.stack(est)])
            kept = select_survivors(evo.selection.method, pool.mean(axis=1), evo.population_size,
                                    np.random.default_rng(0), elite_fraction=evo.selection.elite_fraction,
                                    tournament_size=evo.selection.tournament_size, examples=pool)
            active = [o for k, o in enumerate(offspring) if len(before) + k in kept and o in active]
            continue
        ranked = sorted(active, key=lambda i: (-scores[i][rows_in[:stage]].mean(), i))
        active = sorted(ranked[:max(1, math.ceil(rule * len(ranked)))])
    return active, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--targets", default="a,b,c")
    args = parser.parse_args()
    kept: dict[str, list[float]] = {name: [] for name in SETTINGS}
    every: dict[str, list[bool]] = {name: [] for name in SETTINGS}
    per_offspring: dict[str, list[float]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets.split(","):
            prepared = None
            for seed in (int(s) for s in args.seeds.split(",")):
                out = Path(tmp) / f"{target}-{seed}"
                cfg = load_run_config(ROOT / "configs" / "demo.yaml", {
                    "out": str(out), "seed": seed, "pool.backend": "local", "evolution.racing.enabled": False,
                    "tasks": [{"spec": str(ROOT / "fitness" / f"hard-{target}.yaml")}]})
                prepared = prepared or prepare(cfg)
                execute(cfg, prepared=prepared)
                for before, offspring, survived, scores in generations(out):
                    for name, (stages, rule, order) in SETTINGS.items():
                        full, rows = replay(before, offspring, scores, stages, rule, order, cfg.evolution)
                        if survived:
                            kept[name].append(len(set(full) & set(survived)) / len(survived))
                        every[name].append(set(survived) <= set(full))
                        per_offspring[name].append(rows / len(offspring))
    print("| setting | survivors of full scoring it scores in full | generations with every survivor in full "
          "| fitness rows per offspring |")
    print("|---|---|---|---|")
    for name in SETTINGS:
        print(f"| {name} | {100 * np.mean(kept[name]):.0f} % | {100 * np.mean(every[name]):.0f} % "
              f"| {np.mean(per_offspring[name]):.0f} |")


if __name__ == "__main__":
    main()
