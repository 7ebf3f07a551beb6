"""Exact LoRA merging against hand-computed updates: every weighted sum of members is exact,
non-linear methods act on the updates, max_rank keeps the best low-rank update."""

from __future__ import annotations

import pytest
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.merge import merge_genomes, merge_genomes_grouped
from evo_merge.merge.lora_exact import LoraBasis
from evo_merge.operators.mutation import mutate

PREFIXES = ("m.layers.0.q", "m.layers.1.q")


def adapter(seed: int, rank: int, out: int = 6, inp: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = {}
    for p in PREFIXES:
        t[f"{p}.lora_A.weight"] = torch.randn(rank, inp, generator=g)
        t[f"{p}.lora_B.weight"] = torch.randn(out, rank, generator=g)
    return t


def members(ranks=(2, 3, 1), scales=(2.0, 0.5, 1.0), max_rank=None):
    raw = {f"e{i}": (adapter(i, r), s) for i, (r, s) in enumerate(zip(ranks, scales))}
    basis = LoraBasis.from_members(raw, max_rank)
    genomes = {n: Genome.from_tensors(basis.member_tensors(n, t), "lora_exact", basis=basis) for n, (t, _) in raw.items()}
    return raw, basis, genomes


def update_of(raw, name, prefix):
    t, s = raw[name]
    return s * t[f"{prefix}.lora_B.weight"] @ t[f"{prefix}.lora_A.weight"]


def merged_update(genome: Genome, prefix: str) -> torch.Tensor:
    return genome.basis.update(f"{prefix}.lora_B.weight", genome.tensors()[f"{prefix}.lora_B.weight"])


def test_a_member_is_its_own_update_in_its_block():
    raw, basis, g = members()
    assert basis.rank == 6 and [b[:3] for b in basis.blocks] == [("e0", 0, 2), ("e1", 2, 3), ("e2", 5, 1)]
    for name in raw:
        for p in PREFIXES:
            torch.testing.assert_close(merged_update(g[name], p), update_of(raw, name, p))


@pytest.mark.parametrize("method,weights,params", [("linear", [0.2, 0.5, 0.3], {}),
                                                   ("task_arithmetic", [1.0, -0.5, 2.0], {"lambda": 0.7})])
def test_every_weighted_sum_of_members_is_exact(method, weights, params):
    raw, _, g = members()
    child = merge_genomes(method, list(g.values()), weights, params=params)
    total = sum(weights) if method == "linear" else 1 / params["lambda"]
    for p in PREFIXES:
        expected = sum(w * update_of(raw, n, p) for w, n in zip(weights, raw)) / total
        torch.testing.assert_close(merged_update(child, p), expected)


def test_merges_of_merges_stay_exact_and_per_group_too():
    raw, _, g = members()
    a = merge_genomes("linear", [g["e0"], g["e1"]], [0.5, 0.5])
    b = merge_genomes("linear", [g["e1"], g["e2"]], [0.25, 0.75])
    c = merge_genomes_grouped("linear", [a, b], torch.tensor([[1.0, 0.0], [0.2, 0.8]]), [0, 1],
                              params={"normalize": False})
    torch.testing.assert_close(merged_update(c, PREFIXES[0]), 0.5 * (update_of(raw, "e0", PREFIXES[0]) +
                                                                     update_of(raw, "e1", PREFIXES[0])))
    p = PREFIXES[1]
    want = 0.2 * 0.5 * (update_of(raw, "e0", p) + update_of(raw, "e1", p)) + \
        0.8 * (0.25 * update_of(raw, "e1", p) + 0.75 * update_of(raw, "e2", p))
    torch.testing.assert_close(merged_update(c, p), want)


def test_ties_acts_on_the_updates_and_is_projected_onto_the_basis():
    raw, basis, g = members()
    child = merge_genomes("ties", [g["e0"], g["e1"]], [1.0, 1.0], params={"density": 1.0})
    for p in PREFIXES:  # density 1: TIES is the sign-elected disjoint mean of the two updates
        u0, u1 = update_of(raw, "e0", p), update_of(raw, "e1", p)
        elected = torch.where(u0 + u1 >= 0, 1.0, -1.0)
        agree0, agree1 = (u0 * elected > 0).float(), (u1 * elected > 0).float()
        ties = (u0 * agree0 + u1 * agree1) / (agree0 + agree1).clamp(min=1)
        a = basis.a[p]
        projected = ties @ a.T @ torch.linalg.inv(a @ a.T) @ a  # least squares onto A_cat's row space
        torch.testing.assert_close(merged_update(child, p), projected, atol=1e-4, rtol=1e-4)


def test_max_rank_keeps_the_best_low_rank_update():
    raw, _, g = members(max_rank=2)
    child = merge_genomes("linear", list(g.values()), [1.0, 1.0, 1.0], params={"normalize": False})
    for p in PREFIXES:
        full = sum(update_of(raw, n, p) for n in raw)
        u, s, vh = torch.linalg.svd(full)
        best = (u[:, :2] * s[:2]) @ vh[:2]
        got = merged_update(child, p)
        assert torch.linalg.matrix_rank(got, rtol=1e-4) == 2
        torch.testing.assert_close(got, best, atol=1e-4, rtol=1e-4)


def test_svd_mutation_rescales_singular_values_only():
    raw, basis, g = members()
    child = mutate(g["e1"], seed=3, mode="svd", sigma=0.3)
    for p in PREFIXES:
        before = torch.linalg.svdvals(merged_update(g["e1"], p))[:3]
        after = torch.linalg.svdvals(merged_update(child, p))[:3]
        assert not torch.allclose(before, after) and torch.all(after > 0)
        ratio = (after / before).log()
        assert float(ratio.abs().max()) < 2.0  # log-normal factors of sigma 0.3
    assert mutate(g["e1"], seed=3, mode="svd", sigma=0.3).content_hash() == child.content_hash()


def test_members_must_adapt_the_same_modules():
    one, two = adapter(0, 2), adapter(1, 2)
    two.pop(f"{PREFIXES[1]}.lora_A.weight")
    with pytest.raises(EvoMergeError, match="adapts other modules"):
        LoraBasis.from_members({"a": (one, 1.0), "b": (two, 1.0)})
