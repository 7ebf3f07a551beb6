"""Nevergrad coefficient search on the demo population: test score and budget curves.

    python benchmarks/search.py --budget 80 --curve-budgets 10 20 40 80 160 --seeds 0 1

1. For each demo target task, ``evo-merge search`` (NGOpt, one coefficient per expert,
   task_arithmetic) against the uniform merge and the best member, on the held-out test split.
2. On ``prev_dec_add``, the test score of the searched composition for each budget, for
   two optimizers (NGOpt and CMA), mean over seeds; written to benchmarks/search_budget.png.

All runs use a Ray pool of 2 workers; the search keeps 2 candidates in flight and tells
results in ask order, so every figure is reproducible whatever order the workers finish in.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from evo_merge.config import load_run_config
from evo_merge.pool.ray_pool import RayExecutor
from evo_merge.runner import execute_search, prepare

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["demo-add-next", "demo-sub-inc", "demo-prev-dec-add", "demo-gen-next-dec"]


def run(task: str, tmp: Path, prepared_cache: dict, executors: dict, seed: int = 0, **search) -> dict[str, dict]:
    overrides = {"seed": seed, "out": str(tmp / f"{task}-{time.perf_counter_ns()}"), "tasks": [{"spec": f"../fitness/{task}.yaml"}],
                 "pool.workers": 2, "search.num_workers": 2, "search.tell_order": "ask", **{f"search.{k}": v for k, v in search.items()}}
    cfg = load_run_config(ROOT / "configs" / "demo-search.yaml", overrides)
    if task not in prepared_cache:
        prepared_cache[task] = prepare(cfg)
    if task not in executors:  # one pool at a time: its workers hold this task's data
        for ex in executors.values():
            ex.close()
        executors.clear()
        executors[task] = RayExecutor(prepared_cache[task].spec, cfg.pool)
    ex = executors[task]
    start = time.perf_counter()
    outcome = execute_search(cfg, prepared=prepared_cache[task], executor=ex)
    rows = {r["name"]: r for r in outcome.rows}
    rows["seconds"] = {"wall": time.perf_counter() - start}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=80)
    parser.add_argument("--curve-budgets", type=int, nargs="+", default=[10, 20, 40, 80, 160])
    parser.add_argument("--optimizers", nargs="+", default=["NGOpt", "CMA"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--png", type=Path, default=ROOT / "benchmarks" / "search_budget.png")
    args = parser.parse_args()
    prepared: dict = {}
    executors: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            print(f"{'task':<18}{'best member':>13}{'uniform':>10}{'searched':>10}{'(fitness)':>11}{'wall s':>8}")
            for task in TASKS:
                rows = run(task, Path(tmp), prepared, executors, budget=args.budget)
                s = rows["searched composition"]
                print(f"{task:<18}{rows['best initial member']['test']:>13.3f}{rows['uniform merge']['test']:>10.3f}"
                      f"{s['test']:>10.3f}{s['fitness']:>11.3f}{rows['seconds']['wall']:>8.1f}")
            curves: dict[str, list[float]] = {}
            task = "demo-prev-dec-add"
            print(f"\nbudget curve on {task} (test score, mean over seeds {args.seeds})")
            print(f"{'optimizer':<12}" + "".join(f"{b:>8}" for b in args.curve_budgets))
            for opt in args.optimizers:
                curves[opt] = []
                for budget in args.curve_budgets:
                    scores = [run(task, Path(tmp), prepared, executors, optimizer=opt, budget=budget, seed=seed)
                              ["searched composition"]["test"] for seed in args.seeds]
                    curves[opt].append(float(np.mean(scores)))
                print(f"{opt:<12}" + "".join(f"{v:>8.3f}" for v in curves[opt]))
        finally:
            for ex in executors.values():
                ex.close()
    plot(curves, args.curve_budgets, args.png, task, args.seeds)
    print(f"wrote {args.png}")


def plot(curves: dict[str, list[float]], budgets: list[int], path: Path, task: str, seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    for name, ys in curves.items():
        ax.plot(budgets, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("budget (candidates evaluated)")
    ax.set_ylabel("held-out test score")
    ax.set_title(f"{task}: searched composition, mean of seeds {seeds}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
