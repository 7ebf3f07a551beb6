"""Ray pool throughput, scaling, Ray-layer overhead and idle worker time.

    python benchmarks/pool.py --jobs 100 --repeats 3

1. Throughput: the same offspring jobs (TIES crossover of two demo members + fitness on
   200 examples) through the plain Worker in this process, then Ray pools of 1 and 2
   workers (timed after the actors are up and warm).
   The plain path runs torch on one thread, as a Ray worker with cpus_per_worker=1 does.
2. Idle worker time: full demo runs with 2 Ray workers in generational and async mode;
   idle = wall seconds x workers - busy worker-seconds, summed over the windows in which
   jobs are in flight (a generational phase; the whole steady state in async mode).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from evo_merge.config import load_run_config
from evo_merge.operators.recipe import Recipe
from evo_merge.pool.factory import make_worker
from evo_merge.pool.executor import run_all
from evo_merge.pool.jobs import Job
from evo_merge.pool.ray_pool import RayExecutor
from evo_merge.runner import execute, prepare
from evo_merge.store.weights import WeightStore

ROOT = Path(__file__).resolve().parents[1]


def offspring_jobs(prepared, run_dir: Path, n: int, seed: int) -> list[Job]:
    """n TIES crossovers of random member pairs with random weights: every child is new,
    so each measurement writes every child (the store skips genomes it already holds)."""
    store = WeightStore(run_dir / "weights")
    digests = [store.save(g) for g in prepared.members.values()]
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        a, b = rng.choice(len(digests), 2, replace=False)
        w = float(rng.uniform(0.2, 0.8))
        recipe = Recipe("crossover", [0, 1], "ties", [w, 1 - w], {"density": 0.7}, seed=i)
        jobs.append(Job(recipe=recipe, inputs={0: digests[a], 1: digests[b]}))
    return jobs


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(cfg_path: Path, n: int, repeats: int) -> None:
    """Median over ``repeats`` of the wall time for n jobs; 'worker s/job' is the time the
    worker itself spent per job (build + evaluation), so wall minus it is what the path adds."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_run_config(cfg_path, {"out": str(Path(tmp) / "run")})
        prepared = prepare(cfg)
        prepared.spec.run_dir = Path(tmp) / "run"
        batches = iter(offspring_jobs(prepared, prepared.spec.run_dir, n, seed) for seed in range(1000))
        print(f"{n} jobs, median of {repeats}")
        print(f"{'path':<32}{'wall s':>8}{'ind/min':>10}{'vs plain':>10}{'worker s/job':>14}")

        def row(label, walls, busy):
            t = float(np.median(walls))
            vs = "" if plain is None else f"{t / plain - 1:+.1%}"
            print(f"{label:<32}{t:>8.2f}{60 * n / t:>10.1f}{vs:>10}{busy:>14.4f}")
            return t

        torch.set_num_threads(1)  # a Ray worker with cpus_per_worker=1 runs torch on one thread
        worker = make_worker(prepared.spec)
        worker.run(next(batches)[0])  # warm-up
        walls, busy = [], []
        for _ in range(repeats):
            results = []
            walls.append(timed(lambda: results.extend(worker.run(j) for j in next(batches))))
            busy.append(np.mean([r.build_seconds + r.evaluation.seconds for r in results]))
        plain = None
        plain = row("plain Worker (1 thread)", walls, float(np.median(busy)))
        rates = {}
        for workers, prefetch in ((1, 1), (1, 2), (2, 1), (2, 2)):
            cfg.pool.workers, cfg.pool.prefetch = workers, prefetch
            ex = RayExecutor(prepared.spec, cfg.pool)
            walls, busy = [], []
            try:
                run_all(ex, next(batches)[:workers])  # warm-up: every actor loaded and has scored once
                for _ in range(repeats):
                    results = []
                    walls.append(timed(lambda: results.extend(run_all(ex, next(batches)))))
                    busy.append(np.mean([r.build_seconds + r.evaluation.seconds for r in results]))
            finally:
                ex.close()
            t = row(f"Ray, {workers} worker(s), prefetch {prefetch}", walls, float(np.median(busy)))
            rates[(workers, prefetch)] = n / t
        for prefetch in (1, 2):
            print(f"scaling efficiency 1 -> 2 workers, prefetch {prefetch}: "
                  f"{rates[(2, prefetch)] / rates[(1, prefetch)] / 2:.1%}")


def idle_time(cfg_path: Path) -> None:
    for mode in ("generational", "async"):
        with tempfile.TemporaryDirectory() as tmp:
            overrides = {"out": str(Path(tmp) / "run"), "pool.workers": 2, "pool.mode": mode,
                         "pool.backend": "ray"}
            if mode == "async":
                overrides["evolution.succession.enabled"] = False
            cfg = load_run_config(cfg_path, overrides)
            prepared = prepare(cfg)
            ex = RayExecutor(prepared.spec, cfg.pool)
            try:
                run_all(ex, [])
                start = time.perf_counter()
                execute(cfg, None, prepared, ex)
                wall = time.perf_counter() - start
            finally:
                ex.close()
            gens = cfg.evolution.generations
            # windows with >= 2 jobs: phases where two workers could both be busy
            windows = [w for w in ex.stats.windows if w["jobs"] >= 2]
            jobs = sum(w["jobs"] for w in windows)
            avail = sum(w["wall"] * w["workers"] for w in windows)
            idle = avail - sum(w["busy"] for w in windows)
            print(f"{mode:<13} wall {wall:6.2f}s  windows {len(windows):>3}  jobs {jobs:>4}  "
                  f"idle {idle:6.2f} worker-s of {avail:6.2f} ({idle / avail:.1%}), "
                  f"{idle / gens:.3f} worker-s per generation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "skills.yaml")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["throughput", "idle"], help="run one of the two parts")
    args = parser.parse_args()
    if args.only != "idle":
        throughput(args.config, args.jobs, args.repeats)
    if args.only != "throughput":
        idle_time(args.config)


if __name__ == "__main__":
    main()
