"""Persisting one offspring: content hash + safetensors write, and load + hash check.

    python benchmarks/persist.py --params 100e6 --repeat 5

A float32 genome of ``--params`` values (one flat buffer, CPU). Each repeat saves into a
fresh weight store (so the file is really written) and loads it back with verification.
It uses only ``Genome`` and ``WeightStore``, whose interfaces are unchanged since the
first release, so the same script measures an older checkout:
``PYTHONPATH=<old checkout> python benchmarks/persist.py``.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=100e6)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    genome = Genome.from_tensors({"w": torch.randn(int(args.params)) * 0.01}, "delta", check_finite=False)
    saves, loads = [], []
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
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"evo_merge from {Path(evo_merge.__file__).parent}")
    print(f"genome {args.params / 1e6:.0f} M float32 values ({genome.nbytes() / 1e6:.0f} MB), median of {args.repeat}")
    print(f"persist (hash + write): {statistics.median(saves) * 1e3:.0f} ms")
    print(f"load (read + verify):   {statistics.median(loads) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
