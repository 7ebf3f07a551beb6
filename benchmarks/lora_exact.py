"""What an offspring costs with exact LoRA merging, at gemma-2-2b LoRA shapes, on CPU.

    python benchmarks/lora_exact.py --experts 10 --rank 8 --layers 26 --repeat 3

Random LoRA experts of rank ``--rank`` on every linear layer of gemma-2-2b (hidden 2304,
q 2048, k/v 1024, MLP 9216) over ``--layers`` decoder layers, in the exact representation
(stacked B over the members' stacked A, summed rank R = experts x rank) and, for
comparison, GENOME's ``factors`` representation. Median time per offspring of each step.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from evo_merge.genome import Genome
from evo_merge.merge import merge_genomes
from evo_merge.merge.lora_exact import LoraBasis
from evo_merge.operators.base import PlanContext, build
from evo_merge.operators.member_nudge import nudge_recipe
from evo_merge.operators.mutation import mutate
from offspring import time_it  # benchmarks/ is on the path when a benchmark runs as a script

SHAPES = {"q_proj": (2048, 2304), "k_proj": (1024, 2304), "v_proj": (1024, 2304), "o_proj": (2304, 2048),
          "gate_proj": (9216, 2304), "up_proj": (9216, 2304), "down_proj": (2304, 9216)}


def experts(n: int, rank: int, layers: int) -> dict[str, tuple[dict[str, torch.Tensor], float]]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for e in range(n):
        t = {}
        for layer in range(layers):
            for mod, (o, i) in SHAPES.items():
                p = f"base_model.model.model.layers.{layer}.{'self_attn' if mod[0] in 'qkvo' else 'mlp'}.{mod}"
                t[p + ".lora_A.weight"] = torch.randn(rank, i, generator=g) * 0.01
                t[p + ".lora_B.weight"] = torch.randn(o, rank, generator=g) * 0.01
        out[f"e{e}"] = (t, 2.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=10)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--layers", type=int, default=26)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-ties", action="store_true", help="TIES on the updates is the slow one")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    raw = experts(args.experts, args.rank, args.layers)
    basis = LoraBasis.from_members(raw)
    exact = [Genome.from_tensors(basis.member_tensors(n, t), "lora_exact", basis=basis) for n, (t, _) in raw.items()]
    factors = [Genome.from_tensors(t, "lora") for t, _ in raw.values()]
    a, b = exact[0], exact[1]
    print(f"{args.experts} experts of rank {args.rank}, {args.layers} layers x 7 modules; exact genome "
          f"{a.layout.numel / 1e6:.1f} M values (R = {basis.rank}), factors genome {factors[0].layout.numel / 1e6:.1f} M; "
          f"torch threads {torch.get_num_threads()}")
    rows = [("exact: linear crossover (2 parents)", time_it(lambda: merge_genomes("linear", [a, b], [0.6, 0.4]),
                                                           args.repeat)),
            ("exact: uniform merge of all experts", time_it(lambda: merge_genomes("linear", exact, [1.0] * len(exact)),
                                                          args.repeat)),
            ("factors: linear crossover (2 parents)", time_it(lambda: merge_genomes("linear", factors[:2], [0.6, 0.4]),
                                                            args.repeat)),
            ("exact: gaussian mutation (relative)", time_it(lambda: mutate(a, seed=1, weight_rate=0.1, sigma=0.1,
                                                                         sigma_mode="relative"), args.repeat)),
            ("exact: SVD mutation", time_it(lambda: mutate(a, seed=1, mode="svd", sigma=0.3), args.repeat))]
    ctx = PlanContext(np.random.default_rng(0), None, a.layout.names)
    nudge = nudge_recipe(ctx, 0, [1], 0.25)
    pool = {0: a, 1: b}
    rows.append(("exact: member nudge (one block)", time_it(lambda: build(nudge, pool.__getitem__, lambda i: None),
                                                          args.repeat)))
    if not args.skip_ties:
        rows.append(("exact: TIES on the updates (2 parents)",
                     time_it(lambda: merge_genomes("ties", [a, b], [0.6, 0.4], params={"density": 0.5}), 1)))
    print(f"{'step':<42}{'s/offspring':>12}")
    for name, t in rows:
        print(f"{name:<42}{t:>12.3f}")


if __name__ == "__main__":
    main()
