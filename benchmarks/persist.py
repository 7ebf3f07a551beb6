"""Persisting one offspring: content hash + safetensors write, and load + hash check.

    python benchmarks/persist.py --params 100e6 --repeat 5

A float32 genome of ``--params`` values (one flat buffer, CPU). Each repeat saves into a
fresh weight store (so the file is really written) and loads it back with verification.
It uses only ``Genome`` and ``WeightStore``, whose interfaces are unchanged since the
first release, so the same script measures an older checkout:
``PYTHONPATH=<old checkout> python benchmarks/persist.py``.

Since offspring are no longer written when they are made (only a checkpoint's survivors
are, when their generation closes), the script also splits the cost in two, where the
checkout has ``WeightStore.digest``: the hash every offspring pays, and the write a
survivor pays once. ``--build`` adds, for scale, the time to build that offspring (a
``linear`` crossover of two parents of the same size; ``benchmarks/offspring.py`` has
the other methods) and the cost per offspring for a share ``--written`` of offspring
written (the share a run writes: survivors written / offspring built).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import evo_merge
from evo_merge.genome import Genome
from evo_merge.store.weights import WeightStore


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=100e6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--build", action="store_true", help="also time a linear crossover (build) for scale")
    parser.add_argument("--written", type=float, default=None, help="share of offspring written (0..1)")
    args = parser.parse_args()
    torch.manual_seed(0)
    genome = Genome.from_tensors({"w": torch.randn(int(args.params)) * 0.01}, "delta", check_finite=False)
    saves, loads, hashes, writes = [], [], [], []
    split = hasattr(WeightStore, "digest")
    root = Path(tempfile.mkdtemp())
    try:
        for i in range(args.repeat):
            store = WeightStore(root / f"s{i}")
            start = time.perf_counter()
            digest = store.save(genome)
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            store.load(digest)
            loads.append(time.perf_counter() - start)
            shutil.rmtree(root / f"s{i}")
            if split:
                store = WeightStore(root / f"h{i}")
                start = time.perf_counter()
                digest = store.digest(genome)
                hashes.append(time.perf_counter() - start)
                start = time.perf_counter()
                store.save(genome, digest)
                writes.append(time.perf_counter() - start)
                shutil.rmtree(root / f"h{i}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"evo_merge from {Path(evo_merge.__file__).parent}")
    print(f"genome {args.params / 1e6:.0f} M float32 values ({genome.nbytes() / 1e6:.0f} MB), median of {args.repeat}")
    print(f"persist (hash + write): {median_ms(saves):.0f} ms")
    print(f"load (read + verify):   {median_ms(loads):.0f} ms")
    if split:
        print(f"hash only (every offspring):          {median_ms(hashes):.0f} ms")
        print(f"write, hash known (each survivor, once): {median_ms(writes):.0f} ms")
    if args.build:
        from evo_merge.merge import merge_genomes

        other = Genome.from_tensors({"w": torch.randn(int(args.params)) * 0.01}, "delta", check_finite=False)
        builds = []
        merge_genomes("linear", [genome, other], [0.6, 0.4])  # warm-up
        for _ in range(args.repeat):
            start = time.perf_counter()
            merge_genomes("linear", [genome, other], [0.6, 0.4])
            builds.append(time.perf_counter() - start)
        build = median_ms(builds)
        print(f"build (linear crossover, for scale):  {build:.0f} ms")
        if split:
            print(f"hash / build: {median_ms(hashes) / build:.1%}; write / build: {median_ms(writes) / build:.1%}")
            if args.written is not None:
                per = median_ms(hashes) + args.written * median_ms(writes)
                print(f"per offspring with {args.written:.0%} written: {per:.0f} ms = {per / build:.1%} of the build")


if __name__ == "__main__":
    main()
