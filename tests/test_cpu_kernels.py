"""Scoring on a CPU: float32 linear layers through oneDNN (the same values within float32
rounding, and really routed there), and freed activation memory kept in the heap (no page
faults from one forward to the next)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import factories
from evo_merge.fitness import cpu_linear
from evo_merge.fitness.cpu_linear import onednn_linears, uses_onednn
from evo_merge.fitness.evaluator import LocalEvaluator
from evo_merge.fitness.tasks import load_task

needs_onednn = pytest.mark.skipif(not cpu_linear._available(), reason="torch built without oneDNN")
CPU = torch.device("cpu")


@pytest.fixture
def routed(monkeypatch):
    """Counts the calls that reach oneDNN; every model counts as large enough."""
    calls = []
    real = torch.ops.mkldnn._linear_pointwise

    def counting(*args):
        calls.append(tuple(args[0].shape))
        return real(*args)
    monkeypatch.setattr(cpu_linear, "_onednn", counting)
    monkeypatch.setattr(cpu_linear, "MIN_LAYER_PARAMS", 0)
    return calls


@needs_onednn
@pytest.mark.parametrize("peft", [False, True])
@pytest.mark.parametrize("arch", factories.ARCHS)
def test_onednn_linears_give_the_plain_forward_values(arch, peft, routed):
    model = factories.make_arch_model(arch).eval()
    if peft:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "down_proj"], init_lora_weights=False))
    ids = torch.randint(3, len(factories.VOCAB), (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        assert routed == []
        with onednn_linears(model, CPU):
            fast = model(input_ids=ids).logits
    # q k v o gate up down in every layer (and LoRA's A and B of q and down), and the LM head
    assert len(routed) == (7 + (4 if peft else 0)) * model.config.num_hidden_layers + 1
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_onednn_is_left_alone_with_gradients_small_models_other_devices_and_when_off(routed, monkeypatch):
    model = factories.make_arch_model("llama")
    ids = torch.tensor([[3, 4, 5]])
    with onednn_linears(model, CPU):
        model(input_ids=ids)  # gradients on: torch's own path (oneDNN's op is inference only here)
    assert routed == []
    monkeypatch.setattr(cpu_linear, "MIN_LAYER_PARAMS", 1_000_000)
    assert not uses_onednn(model, CPU)  # a tiny model: oneDNN's fixed cost per call is more than it saves
    monkeypatch.setattr(cpu_linear, "MIN_LAYER_PARAMS", 0)
    assert uses_onednn(model, CPU) and not uses_onednn(model, torch.device("meta"))
    monkeypatch.setenv("EVO_MERGE_ONEDNN", "0")
    assert not uses_onednn(model, CPU)


@needs_onednn
def test_the_evaluator_scores_through_onednn(tiny_full, tmp_path, routed, monkeypatch):
    from evo_merge.model_host import ModelHost
    from evo_merge.population import load_population

    population = load_population(tiny_full)
    members = population.load_genomes()
    host = ModelHost(population.base_dir, members["m0"].layout, device="cpu")
    task = load_task(factories.write_task(tmp_path))
    evaluator = LocalEvaluator(host, [(task, 1.0)], batch_size=8)
    fast = evaluator.evaluate(members["m1"])
    assert routed
    monkeypatch.setattr(cpu_linear, "MIN_LAYER_PARAMS", float("inf"))
    calls = len(routed)
    plain = evaluator.evaluate(members["m1"])
    assert len(routed) == calls
    for a, b in zip(fast.predictions[task.name], plain.predictions[task.name]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert fast.score == plain.score


HEAP = """
import ctypes, torch
from evo_merge.fitness.heap import keep_freed_memory
print(keep_freed_memory())
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                               "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
# activations of a few MB to tens of MB, 148 MB in all, made and freed as a forward makes them
alive = [torch.ones(n << 18) for n in (6, 16, 6, 6, 16, 24, 6, 16, 6, 6, 16, 24)]
during = libc.mallinfo2()
del alive
print(during.hblkhd >> 20, libc.mallinfo2().fordblks >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_activation_memory_stays_in_the_heap_for_the_next_forward():
    """With glibc's defaults these blocks are mapped from the OS one by one and unmapped when
    freed (fresh pages, each a page fault, at the next forward); kept, they are the heap's."""
    import ctypes
    import os

    def heap(**env) -> list[str]:
        return subprocess.run([sys.executable, "-c", HEAP], env={**os.environ, **env}, capture_output=True,
                              text=True, check=True).stdout.split()
    if not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"):
        pytest.skip("not glibc >= 2.33")
    on, mapped, kept = heap()
    off, mapped_off, kept_off = heap(EVO_MERGE_KEEP_HEAP="0")
    assert off == "False"
    assert int(mapped) < 16 and int(kept) >= 148  # served from the heap and kept there once freed
    assert int(mapped_off) >= 148 and int(kept_off) < 16  # glibc's defaults: mapped, and given back
