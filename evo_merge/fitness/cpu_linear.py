"""float32 linear layers through oneDNN while scoring on a CPU.

torch runs a float32 ``F.linear`` on a CPU as MKL's sgemm. MKL chooses its code by CPU
vendor: on AMD processors it runs its AVX2 kernels even where the CPU has AVX-512, while
oneDNN, which torch also ships, chooses by instruction set. On this project's CPU (AMD
EPYC, Zen 5, 2 cores) oneDNN runs a decoder's shapes at 2.0-2.4 x MKL's rate
(``benchmarks/cpu_matmul.py``), and one evaluation of 200 prompts on a 134 M model takes
about half the time. Results are float32 matmuls either way; only the summation
order differs (about 1e-6 relative).

``onednn_linears(model, device)`` routes every float32 ``F.linear`` of the block through
``torch.ops.mkldnn._linear_pointwise`` (the op torch's own compiler emits for CPU linear
layers) for models whose decoder layers have at least ``MIN_LAYER_PARAMS`` parameters, on a
CPU where torch has oneDNN; elsewhere, and for smaller models (where oneDNN's fixed cost per
call is larger than the gain), the block runs unchanged, and so it does with
``EVO_MERGE_ONEDNN=0`` (torch's default kernels, e.g. to compare on an Intel CPU, where MKL
runs its AVX-512 kernels itself).
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from evo_merge.fitness.last_layer import layer_params

MIN_LAYER_PARAMS = 1_000_000


def _onednn(*args):
    return torch.ops.mkldnn._linear_pointwise(*args)


def _available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class _OneDnnLinear(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and not torch.is_grad_enabled():
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.dim() >= 2
                    and weight.is_contiguous() and (bias is None or bias.dtype == torch.float32)):
                return _onednn(x.contiguous(), weight, bias, "none", [], "")
        return func(*args, **kwargs)


def uses_onednn(model: torch.nn.Module, device: torch.device) -> bool:
    return (device.type == "cpu" and os.environ.get("EVO_MERGE_ONEDNN") != "0" and _available()
            and layer_params(model) >= MIN_LAYER_PARAMS)


@contextmanager
def onednn_linears(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Within the block (gradients off), float32 linear layers run on oneDNN where that pays."""
    with (_OneDnnLinear() if uses_onednn(model, device) else nullcontext()):
        yield
