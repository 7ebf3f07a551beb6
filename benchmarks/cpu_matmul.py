"""float32 matmul rate on this CPU: torch's default (MKL's sgemm) against oneDNN, which
evo-merge's scoring uses on a CPU (``evo_merge/fitness/cpu_linear.py``).

    python benchmarks/cpu_matmul.py

The shapes of a batch of 32 prompts of 62 tokens (1,984 rows) through the linear layers of
the 134 M Llama of ``lm_eval_speed.py`` (hidden 768, MLP 2048) and of gemma-2-2b (hidden
2304, MLP 9216), and of one generation step (32 rows). Median of 9 calls after one warm-up;
the largest difference between the two results.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch
import torch.nn.functional as F

from evo_merge.fitness.cpu_linear import _onednn

SHAPES = {"134 M q/k/v/o": (1984, 768, 768), "134 M gate/up": (1984, 768, 2048), "134 M down": (1984, 2048, 768),
          "134 M, one generation step": (32, 768, 2048), "gemma-2-2b gate/up": (1984, 2304, 9216),
          "gemma-2-2b down": (1984, 9216, 2304)}


def rate(fn, flop: float) -> float:
    fn()
    times = []
    for _ in range(9):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return flop / statistics.median(times) / 1e9


def main() -> None:
    torch.set_grad_enabled(False)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine()) if platform.system() == "Linux" else platform.machine()
    print(f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'shape':28} {'M x K x N':>18} {'MKL GFLOP/s':>12} {'oneDNN':>8} {'max diff':>9}")
    gen = torch.Generator().manual_seed(0)
    for name, (m, k, n) in SHAPES.items():
        x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen) / k ** 0.5
        flop = 2.0 * m * k * n
        mkl = rate(lambda: F.linear(x, w), flop)
        dnn = rate(lambda: _onednn(x, w, None, "none", [], ""), flop)
        diff = (F.linear(x, w) - _onednn(x, w, None, "none", [], "")).abs().max().item()
        print(f"{name:28} {f'{m} x {k} x {n}':>18} {mkl:12.0f} {dnn:8.0f} {diff:9.1e}")


if __name__ == "__main__":
    main()
