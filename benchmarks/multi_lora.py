"""Batched multi-LoRA scoring against one pass per individual.

    python benchmarks/multi_lora.py --individuals 10 --repeat 3

Scores N LoRA individuals (the demo experts and random mixtures of them) on the
``prev_dec_add`` fitness split (200 examples x 4 choices, mc_loglik): once as N separate
passes (install, then score), once batched (all N adapters in PEFT slots, every batch
row with its own adapter). Prints the median wall time of each and checks that both
give the same scores.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from evo_merge.config import load_run_config
from evo_merge.pool.factory import make_worker
from evo_merge.runner import prepare

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--individuals", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=1024, help="rows per batched forward")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    cfg = load_run_config(ROOT / "configs" / "skills.yaml", {"pool.backend": "local", "eval.device": args.device})
    prepared = prepare(cfg)
    evaluator = make_worker(prepared.spec).evaluator
    members = list(prepared.members.values())
    gen = torch.Generator().manual_seed(0)
    genomes = []
    for i in range(args.individuals):
        w = torch.rand(len(members), generator=gen)
        flat = sum(wi * m.flat for wi, m in zip(w / w.sum(), members))
        genomes.append(members[0].with_flat(flat).to(evaluator.host.device))
    evaluator.evaluate_many(genomes[:2], slots=args.individuals, max_rows=args.max_rows)  # warm-up, slots made
    times = {"separate": [], "batched": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        separate = [evaluator.evaluate(g) for g in genomes]
        times["separate"].append(time.perf_counter() - t)
        t = time.perf_counter()
        batched = evaluator.evaluate_many(genomes, slots=args.individuals, max_rows=args.max_rows)
        times["batched"].append(time.perf_counter() - t)
    same = all(abs(a.score - b.score) < 1e-6 for a, b in zip(separate, batched))
    sep, bat = statistics.median(times["separate"]), statistics.median(times["batched"])
    n_seq = sum(m.scorer.n for m in evaluator.metrics["fitness"].values())
    print(f"device {evaluator.host.device}, {args.individuals} individuals x {n_seq} scored sequences, "
          f"torch threads {torch.get_num_threads()}")
    print(f"separate passes: {sep:.3f} s   batched: {bat:.3f} s   speed-up {sep / bat:.2f}x   same scores: {same}")


if __name__ == "__main__":
    main()
