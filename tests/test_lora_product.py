"""lora.mode product: the parents' B·A products merged and factored back to the members'
rank by SVD."""

import math

import pytest
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.merge import merge_genomes
from evo_merge.merge.lora import merge_lora_product
from test_merge_methods import Q, T, delta, lora


def test_lora_product_of_identical_parents_reproduces_update() -> None:
    p = lora(0)
    out = merge_genomes("linear", [p, p.clone()], [1, 2], lora_mode="product")
    t, o = p.tensors(), out.tensors()
    assert out.layout == p.layout
    expected = t[f"{Q}.lora_B.weight"] @ t[f"{Q}.lora_A.weight"]
    torch.testing.assert_close(o[f"{Q}.lora_B.weight"] @ o[f"{Q}.lora_A.weight"], expected,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o["base_model.model.lm_head.bias"], t["base_model.model.lm_head.bias"])


def test_lora_product_by_hand() -> None:
    # rank 1: B0 A0 = [[2,0],[0,0]], B1 A1 = [[0,0],[0,4]]; mean [[1,0],[0,2]];
    # best rank-1 factors keep singular value 2: B' A' = [[0,0],[0,2]], |B'| = |A'| = sqrt2
    parents = [{"m.lora_A.weight": T(1, 0).view(1, 2), "m.lora_B.weight": T(2, 0).view(2, 1)},
               {"m.lora_A.weight": T(0, 1).view(1, 2), "m.lora_B.weight": T(0, 4).view(2, 1)}]
    out = merge_lora_product("linear", parents, [1, 1], generator=None)
    a, b = out["m.lora_A.weight"], out["m.lora_B.weight"]
    assert a.shape == (1, 2) and b.shape == (2, 1)
    torch.testing.assert_close(b @ a, T(0, 0, 0, 2).view(2, 2))
    torch.testing.assert_close(a.abs(), T(0, math.sqrt(2)).view(1, 2))
    # rank 2 keeps the whole merged update
    out = merge_lora_product("linear", parents, [1, 1], generator=None, rank=2)
    torch.testing.assert_close(out["m.lora_B.weight"] @ out["m.lora_A.weight"], T(1, 0, 0, 2).view(2, 2))


def test_lora_product_random_method_and_rank_above_matrix_size() -> None:
    # rank 8 exceeds min(out, in) = 5: the factors are zero-padded, the layout is kept
    parents = [lora(1, r=8), lora(2, r=8)]
    a = merge_genomes("dare_ties", parents, [1, 1], seed=3, params={"density": 0.7}, lora_mode="product")
    b = merge_genomes("dare_ties", parents, [1, 1], seed=3, params={"density": 0.7}, lora_mode="product")
    assert a.layout == parents[0].layout and a.content_hash() == b.content_hash()
    out = merge_genomes("linear", parents, [1, 3], lora_mode="product").tensors()
    t0, t1 = parents[0].tensors(), parents[1].tensors()
    A, B = f"{Q}.lora_A.weight", f"{Q}.lora_B.weight"
    torch.testing.assert_close(out[B] @ out[A], (t0[B] @ t0[A] + 3 * t1[B] @ t1[A]) / 4, rtol=1e-5, atol=1e-5)
    assert torch.equal(out[A][5:], torch.zeros(3, 6))


def test_lora_product_errors() -> None:
    a, b = torch.ones(2, 3), torch.ones(4, 2)
    with pytest.raises(EvoMergeError, match="m.lora_A.weight has no matching m.lora_B.weight"):
        merge_lora_product("linear", [{"m.lora_A.weight": a}], [1], generator=None)
    with pytest.raises(EvoMergeError, match="m.lora_B.weight has no matching m.lora_A.weight"):
        merge_lora_product("linear", [{"m.lora_B.weight": b}], [1], generator=None)
    rank3 = {"m.lora_A.weight": torch.ones(3, 3), "m.lora_B.weight": torch.ones(4, 3)}
    with pytest.raises(EvoMergeError, match="parent 1 has rank 3"):
        merge_lora_product("linear", [{"m.lora_A.weight": a, "m.lora_B.weight": b}, rank3], [1, 1],
                           generator=None)
    with pytest.raises(EvoMergeError, match=r"parent 0 has A \[2, 3\] and B \[4, 3\]"):
        merge_lora_product("linear", [{"m.lora_A.weight": a, "m.lora_B.weight": torch.ones(4, 3)}], [1],
                           generator=None)
    with pytest.raises(EvoMergeError, match="needs LoRA genomes"):
        merge_genomes("linear", [delta(0)], [1], lora_mode="product")
