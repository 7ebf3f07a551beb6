"""Offspring creation time (crossover + mutation + install in the model) against bytes moved.

    python benchmarks/offspring.py --population populations/demo-lora.yaml
    python benchmarks/offspring.py --random-params 100e6

For each merge method: median time per offspring, the bytes it must read (two parents)
and write (the child), and the effective bandwidth. The last rows are what storing costs:
the content hash every child gets, and the write (fsync'd) of one a checkpoint keeps. ``--random-params`` builds a
random-init Llama of about that many parameters (full-weight deltas, float32).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from evo_merge.genome import Genome
from evo_merge.merge import merge_genomes
from evo_merge.model_host import ModelHost
from evo_merge.operators.mutation import mutate

METHODS = [("linear", {}), ("task_arithmetic", {}), ("ties", {"density": 0.7}),
           ("dare_ties", {"density": 0.7}), ("slerp", {})]


def random_population(n_params: float, workdir: Path) -> tuple[Path, list[Genome]]:
    """A random-init Llama saved as the base, and two random delta genomes of its weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    per_layer = 4 * 768 * 768 + 3 * 768 * 2048  # attention + gated MLP
    layers = max(1, round((n_params - 2 * 32000 * 768) / per_layer))
    cfg = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=layers,
                      num_attention_heads=12, num_key_value_heads=12)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(workdir / "base", safe_serialization=True)
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
                            unk_token="<unk>", eos_token="<unk>").save_pretrained(workdir / "base")
    names = {n: p.detach() for n, p in model.named_parameters()}
    parents = [Genome.from_tensors({n: torch.randn_like(t) * 0.01 for n, t in names.items()}, "delta")
               for _ in range(2)]
    return workdir / "base", parents


def demo_population(spec: Path) -> tuple[Path, list[Genome], Path | None]:
    from evo_merge.population import load_population

    pop = load_population(spec)
    genomes = list(pop.load_genomes().values())[:2]
    adapter = next(iter(pop.member_dirs.values())) if pop.spec.kind == "lora" else None
    return pop.base_dir, genomes, adapter


def layers_of(base: Path) -> int:
    import json
    return json.loads((base / "config.json").read_text())["num_hidden_layers"]


def time_it(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=Path)
    parser.add_argument("--random-params", type=float)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        if args.population:
            base, parents, adapter = demo_population(args.population)
            label = args.population.stem
        else:
            base, parents = random_population(args.random_params, Path(tmp))
            adapter, label = None, f"random-init Llama ({layers_of(base)} layers)"
        host = ModelHost(base, parents[0].layout, adapter_dir=adapter, device="cpu", dtype="float32",
                         basis=parents[0].basis)
        nbytes = parents[0].nbytes()
        moved = 3 * nbytes  # read two parents, write one child
        print(f"{label}: genome {parents[0].layout.numel / 1e6:.2f} M values, {nbytes / 1e6:.1f} MB, "
              f"{len(parents[0].layout.names)} tensors, torch threads {torch.get_num_threads()}")
        print(f"{'step':<28}{'ms/offspring':>14}{'GB/s (3x genome)':>18}")
        rows = []
        for method, params in METHODS:
            t = time_it(lambda: merge_genomes(method, parents, [0.6, 0.4], seed=1, params=params), args.repeat)
            rows.append((f"crossover {method}", t))
        child = merge_genomes("linear", parents, [0.6, 0.4])
        rows.append(("mutation (rate 0.01)", time_it(lambda: mutate(child, seed=3), args.repeat)))
        rows.append(("install in model", time_it(lambda: host.install(child), args.repeat)))
        total = (lambda: host.install(mutate(merge_genomes("ties", parents, [0.6, 0.4], params={"density": 0.7}),
                                             seed=3)))
        rows.append(("ties + mutation + install", time_it(total, args.repeat)))
        from evo_merge.store.weights import WeightStore

        store = WeightStore(Path(tmp) / "weights")
        if hasattr(store, "digest"):  # offspring are hashed when made, written only if a checkpoint keeps them
            digest = store.digest(child)
            rows.append(("content hash (every child)", time_it(lambda: store.digest(child), args.repeat)))

            def write() -> None:
                store.path(digest).unlink(missing_ok=True)
                store.save(child, digest)

            rows.append(("write, hash known (kept)", time_it(write, args.repeat)))
        for name, t in rows:
            print(f"{name:<28}{t * 1e3:>14.2f}{moved / t / 1e9:>18.2f}")


if __name__ == "__main__":
    main()
