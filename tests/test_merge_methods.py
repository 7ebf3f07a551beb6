import dataclasses
import math

import pytest
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.merge import get_merge_method, merge_genomes, merge_methods

Q = "base_model.model.model.layers.0.self_attn.q_proj"


def T(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def run(name: str, tensors: list[torch.Tensor], weights: list[float], seed: int | None = None,
        **params: object) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return get_merge_method(name)(tensors, torch.tensor(weights), generator=gen, **params)


def delta(seed: int, dtype: torch.dtype = torch.float32) -> Genome:
    g = torch.Generator().manual_seed(seed)
    shapes = {"a": (5, 7), "b": (3,), "c": (4, 2, 3)}
    return Genome.from_tensors({n: torch.randn(s, generator=g).to(dtype) for n, s in shapes.items()},
                               kind="delta")


def lora(seed: int, r: int = 2) -> Genome:
    g = torch.Generator().manual_seed(seed)
    return Genome.from_tensors({f"{Q}.lora_A.weight": torch.randn(r, 6, generator=g),
                                f"{Q}.lora_B.weight": torch.randn(5, r, generator=g),
                                "base_model.model.lm_head.bias": torch.randn(3, generator=g)}, kind="lora")


# ---- hand-computed values -------------------------------------------------------------

X0, X1 = T(1, 2, 3, 4), T(3, 0, -1, 2)


def test_linear_by_hand() -> None:
    # 1*x0 + 3*x1 = [10, 2, 0, 10]; normalized by 1 + 3 = 4
    assert torch.equal(run("linear", [X0, X1], [1, 3]), T(2.5, 0.5, 0, 2.5))
    assert torch.equal(run("linear", [X0, X1], [1, 3], normalize=False), T(10, 2, 0, 10))


def test_task_arithmetic_by_hand() -> None:
    # lambda * (1*x0 + 3*x1) = 0.5 * [10, 2, 0, 10]
    assert torch.equal(run("task_arithmetic", [X0, X1], [1, 3], lambda_=0.5), T(5, 1, 0, 5))
    # normalized: 2 * [10, 2, 0, 10] / 4 (mergekit's spelling "lambda" accepted)
    assert torch.equal(run("task_arithmetic", [X0, X1], [1, 3], normalize=True, **{"lambda": 2.0}),
                       T(5, 1, 0, 5))


def test_ties_by_hand() -> None:
    # density 0.5 of 4 values keeps the top 2 magnitudes of each task vector:
    #   x0 = [ 3, -1,  2, 0.5] -> [ 3, 0,  2, 0]
    #   x1 = [-2, .5, -4, 1  ] -> [-2, 0, -4, 0]
    # w = [1, 1]: sum [1, 0, -2, 0] -> elected signs [+, +, -, +] (0 counts as +)
    #   pos 0: only x0 agrees -> 3/1; pos 2: only x1 agrees -> -4/1; pos 1, 3: nothing -> 0
    x0, x1 = T(3, -1, 2, 0.5), T(-2, 0.5, -4, 1)
    assert torch.equal(run("ties", [x0, x1], [1, 1], density=0.5), T(3, 0, -4, 0))
    # w = [2, 1]: weighted [6, 0, 4, 0] + [-2, 0, -4, 0] = [4, 0, 0, 0] -> all +
    #   pos 0: 6 / 2 = 3; pos 2: sum 0 elects +, x0 agrees -> 4 / 2 = 2
    assert torch.equal(run("ties", [x0, x1], [2, 1], density=0.5), T(3, 0, 2, 0))
    assert torch.equal(run("ties", [x0, x1], [2, 1], density=0.5, normalize=False, lambda_=0.5),
                       T(3, 0, 2, 0))
    # three parents, density 1, w = [1, 1, 2]: weighted [1,-2], [3,1], [-2,-2]; sum [2,-3] -> [+, -]
    #   pos 0: (1 + 3) / (1 + 1) = 2; pos 1: (-2 - 2) / (1 + 2) = -4/3
    three = [T(1, -2), T(3, 1), T(-1, -1)]
    torch.testing.assert_close(run("ties", three, [1, 1, 2]), T(2, -4 / 3))


def test_dare_by_hand() -> None:
    # density 1 drops nothing: dare_ties is TIES (mergekit's default: not normalized), dare_linear
    # is task arithmetic. weighted [1,-2], [3,1], [-2,-2]; signs [+, -]: [1 + 3, -2 - 2]
    three = [T(1, -2), T(3, 1), T(-1, -1)]
    assert torch.equal(run("dare_ties", three, [1, 1, 2], seed=0), T(4, -4))
    torch.testing.assert_close(run("dare_ties", three, [1, 1, 2], seed=0, normalize=True), T(2, -4 / 3))
    assert torch.equal(run("dare_linear", [X0, X1], [1, 3], seed=0, lambda_=0.5), T(5, 1, 0, 5))
    # density 0.5 on one parent, rescale inverse_density: every value is dropped (0) or doubled
    x = T(1, -2, 0.5, 4, 3, -1, 2, 7)
    for name in ("dare_linear", "dare_ties"):
        out = run(name, [x], [1], seed=3, density=0.5, rescale="inverse_density")
        assert bool(((out == 0) | (out == 2 * x)).all())
        assert 0 < int((out == 0).sum()) < 8


def test_breadcrumbs_by_hand() -> None:
    # 10 values, density 0.6, gamma 0.1: drop the 1 largest and the 3 smallest magnitudes
    x0 = T(0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8, 0.9, -10)
    x1 = T(4, 3, 2, 1, -5, 0.5, 0.25, 6, -7, 8)
    #   x0 -> [0, 0, 0, -.4, .5, -.6, .7, -.8, .9, 0]     (drops .1, .2, .3 and 10)
    #   x1 -> [4, 3, 2, 0, -5, 0, 0, 6, -7, 0]            (drops .25, .5, 1 and 8)
    # x0' + 0.5 * x1'
    out = run("breadcrumbs", [x0, x1], [1, 0.5], density=0.6, gamma=0.1)
    torch.testing.assert_close(out, T(2, 1.5, 1, -0.4, -2, -0.6, 0.7, 2.2, -2.6, 0))
    # ties: sum of weighted signs elects [+,+,+,-,-,-,+,+,-,+]; keep agreeing terms only
    out = run("breadcrumbs_ties", [x0, x1], [1, 0.5], density=0.6, gamma=0.1)
    torch.testing.assert_close(out, T(2, 1.5, 1, -0.4, -2.5, -0.6, 0.7, 3, -3.5, 0))
    # normalized: divide by the agreeing weights (0.5 where only x1 agrees, 1 where only x0)
    out = run("breadcrumbs_ties", [x0, x1], [1, 0.5], density=0.6, gamma=0.1, normalize=True)
    torch.testing.assert_close(out, T(4, 3, 2, -0.4, -5, -0.6, 0.7, 6, -7, 0))
    # density 0.9, gamma 0.2 leaves room to drop only 1: the largest (8), nothing small
    out = run("breadcrumbs", [x1], [1], density=0.9, gamma=0.2)
    assert torch.equal(out, T(4, 3, 2, 1, -5, 0.5, 0.25, 6, -7, 0))


def test_slerp_by_hand() -> None:
    s = math.sqrt(0.5)
    # orthogonal: theta = pi/2, t = 0.5 -> sin(pi/4) * (v0 + v1)
    torch.testing.assert_close(run("slerp", [T(2, 0), T(0, 3)], [1, 1]), T(2 * s, 3 * s))
    # t = 1/3: s0 = sin(pi/3), s1 = sin(pi/6); weights are ignored
    torch.testing.assert_close(run("slerp", [T(2, 0), T(0, 3)], [9, 1], t=1 / 3),
                               T(2 * math.sqrt(3) / 2, 1.5))
    # colinear: lerp, 0.75 * [1, 2] + 0.25 * [2, 4]
    torch.testing.assert_close(run("slerp", [T(1, 2), T(2, 4)], [1, 1], t=0.25), T(1.25, 2.5))


def test_model_stock_by_hand() -> None:
    # cos([1,0],[1,1]) = 1/sqrt2; t = 2c / (1 + c) = 2(sqrt2 - 1); mean [1, .5]
    t = 2 * (math.sqrt(2) - 1)
    torch.testing.assert_close(run("model_stock", [T(1, 0), T(1, 1)], [1, 1]), T(t, t / 2))
    # three: cosines 0, 1/sqrt2, 1/sqrt2 -> c = sqrt2/3; t = 3c / (1 + 2c) = 0.7279221; mean [2/3, 2/3]
    out = run("model_stock", [T(1, 0), T(0, 1), T(1, 1)], [5, 1, 1])
    torch.testing.assert_close(out, T(0.4852814, 0.4852814))
    # opposite task vectors: cos -1 clamped to 0 -> t = 0, the base
    assert torch.equal(run("model_stock", [T(1, 0), T(-1, 0)], [1, 1]), T(0, 0))


# ---- invariants -------------------------------------------------------------------------

@pytest.mark.parametrize("name,params", [("linear", {}), ("task_arithmetic", {"normalize": True}),
                                         ("ties", {}), ("slerp", {"t": 0.3}), ("model_stock", {})])
def test_identical_parents_give_the_parent(name: str, params: dict) -> None:
    p = delta(1)
    out = merge_genomes(name, [p, p.clone()], [0.3, 0.7], params=params)
    torch.testing.assert_close(out.flat, p.flat, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["dare_linear", "dare_ties"])
def test_dare_expectation_equals_input(name: str) -> None:
    x = T(1, -2, 0.5, 4)
    p = Genome.from_tensors({"x": x}, kind="delta")
    n = 2000
    params = {"density": 0.5, "rescale": "inverse_density"}
    mean = sum(merge_genomes(name, [p], [1], seed=s, params=params).flat for s in range(n)) / n
    # each sample is 0 or 2x (std |x|), so the mean's std is |x| / sqrt(2000) = 0.022 |x|: allow ~4.5 std
    assert bool(((mean - x).abs() <= 0.1 * x.abs()).all()), mean


@pytest.mark.parametrize("seed", [0, 1])
def test_slerp_endpoints(seed: int) -> None:
    a, b = delta(seed), delta(seed + 10)
    assert torch.equal(merge_genomes("slerp", [a, b], [1, 1], params={"t": 0.0}).flat, a.flat)
    assert torch.equal(merge_genomes("slerp", [a, b], [1, 1], params={"t": 1.0}).flat, b.flat)


@pytest.mark.parametrize("name,params", [("linear", {}), ("task_arithmetic", {"lambda_": 0.7}),
                                         ("dare_ties", {"rescale": "inverse_density"}),
                                         ("dare_linear", {"rescale": False}),
                                         ("linear", {"normalize": False}), ("passthrough", {"scale": 2.0})])
def test_elementwise_fast_path_equals_per_tensor_path(name: str, params: dict) -> None:
    method = get_merge_method(name)
    assert method.is_elementwise(method.resolve_params(params))
    slow = dataclasses.replace(method, elementwise=False, elementwise_if=None)
    if name == "passthrough":
        parents, weights = [delta(1)], [1.0]
    else:
        parents, weights = [delta(1), delta(2), delta(3)], [0.2, 0.5, 1.3]
    fast_out = merge_genomes(method, parents, weights, seed=4, params=params)
    slow_out = merge_genomes(slow, parents, weights, seed=4, params=params)
    assert torch.equal(fast_out.flat, slow_out.flat)


def test_dare_with_l1_rescale_is_per_tensor() -> None:
    # mergekit's rescale restores each tensor's L1 norm, so it cannot run on a flat buffer
    method = get_merge_method("dare_ties")
    assert not method.elementwise and not method.is_elementwise(method.resolve_params({}))


@pytest.mark.parametrize("name", sorted(merge_methods()))
def test_deterministic_and_dtype_kept(name: str) -> None:
    parents = [delta(1, torch.bfloat16), delta(2, torch.bfloat16)]
    params = {"density": 0.5} if "dare" in name or "della" in name or name == "ties" else {}
    if name == "nearswap":
        params = {"t": 0.3}
    if name == "passthrough":
        parents, params = parents[:1], {"scale": 0.5}
    w = [0.4, 0.6][:len(parents)]
    a = merge_genomes(name, parents, w, seed=7, params=params)
    b = merge_genomes(name, parents, w, seed=7, params=params)
    assert a.flat.dtype == torch.bfloat16 and a.layout == parents[0].layout
    assert a.content_hash() == b.content_hash()
    if get_merge_method(name).uses_random:
        assert not torch.equal(a.flat, merge_genomes(name, parents, w, seed=8, params=params).flat)


@pytest.mark.parametrize("density,gamma", [(0.3, 0.0), (0.5, 0.1), (0.77, 0.2)])
def test_trimming_with_tied_magnitudes_matches_stable_sort(density: float, gamma: float) -> None:
    # values in {-3..3}: many ties. TIES keeps the first n_keep of a stable descending sort of
    # |x| (mergekit's argsort, which is stable at this size); breadcrumbs the stable ascending
    # ranks [n_bot, n - n_top) (mergekit's sort): ties resolved lowest index first both ways
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 4, (101,), generator=g).float()
    n = x.numel()
    order = torch.sort(x.abs(), stable=True).indices
    descending = torch.sort(x.abs(), descending=True, stable=True).indices
    n_keep, n_top = int(density * n), int(gamma * n)
    for name, params, kept in [("ties", {}, descending[:n_keep]),
                               ("breadcrumbs", {"gamma": gamma}, order[n - n_keep - n_top:n - n_top])]:
        expected = torch.zeros(n)
        expected[kept] = x[kept]
        assert torch.equal(run(name, [x], [1], density=density, **params), expected), name


def test_all_zero_task_vectors_give_zero_not_nan() -> None:
    zeros = [torch.zeros(6), torch.zeros(6)]
    for name in ("ties", "dare_ties", "breadcrumbs_ties", "model_stock", "slerp"):
        params = {"density": 0.5} if name in ("ties", "dare_ties") else {}
        assert torch.equal(run(name, zeros, [1, 1], seed=0, **params), torch.zeros(6)), name


# ---- errors -----------------------------------------------------------------------------

def test_errors() -> None:
    p, q = delta(1), delta(2)
    with pytest.raises(EvoMergeError, match="unknown merge method 'tie'"):
        merge_genomes("tie", [p, q], [1, 1])
    with pytest.raises(EvoMergeError, match="unknown parameter 'densty'"):
        merge_genomes("ties", [p, q], [1, 1], params={"densty": 0.5})
    with pytest.raises(EvoMergeError, match=r"parent 1: tensor b has shape \[2\], expected \[3\]"):
        merge_genomes("linear", [p, Genome.from_tensors({**p.tensors(), "b": torch.ones(2)}, "delta")],
                      [1, 1])
    with pytest.raises(EvoMergeError, match="parent 1 tensor has shape"):
        run("linear", [T(1, 2), T(1, 2, 3)], [1, 1])
    bad = q.clone()
    bad.flat[40] = float("nan")
    with pytest.raises(EvoMergeError, match="parent 1: tensor c holds NaN"):
        merge_genomes("linear", [p, bad], [1, 1])
    with pytest.raises(EvoMergeError, match="weights must be finite"):
        merge_genomes("linear", [p, q], [1, float("nan")])
    with pytest.raises(EvoMergeError, match="weights sum to zero"):
        merge_genomes("linear", [p, q], [1, -1])
    # the task-arithmetic family divides by 1 where the weights sum to zero (mergekit's rule)
    assert torch.equal(merge_genomes("ties", [p, q], [0, 0]).flat, torch.zeros_like(p.flat))
    for density in (0.0, 1.5):
        with pytest.raises(EvoMergeError, match=r"density must be in \(0, 1\]"):
            merge_genomes("dare_linear", [p, q], [1, 1], seed=0, params={"density": density})
    with pytest.raises(EvoMergeError, match="is random: give a seed"):
        merge_genomes("dare_ties", [p, q], [1, 1])
    with pytest.raises(EvoMergeError, match="needs exactly 2 parents, got 3"):
        merge_genomes("task_slerp", [p, q, p], [1, 1, 1])
    with pytest.raises(EvoMergeError, match="needs at most 2 parents, got 3"):
        merge_genomes("slerp", [p, q, p], [1, 1, 1])
    with pytest.raises(EvoMergeError, match="parameter density: 3 values for 2 models"):
        merge_genomes("ties", [p, q], [1, 1], params={"density": [0.5, 0.5, 0.5]})
    with pytest.raises(EvoMergeError, match=r"parameter density: density must be in \(0, 1\] \(item 1\)"):
        merge_genomes("ties", [p, q], [1, 1], params={"density": [0.5, 1.5]})
    with pytest.raises(EvoMergeError, match="takes no base model"):
        get_merge_method("linear")([T(1), T(2)], T(1, 1), base=T(0))
    with pytest.raises(EvoMergeError, match="3 weights for 2 parents"):
        merge_genomes("linear", [p, q], [1, 1, 1])


@pytest.mark.parametrize("m", [1, 7, 1_000_000, 2_999_990, 2_999_999])
def test_large_tensor_selection_is_exact_including_ties(m):
    """Above the exact-kthvalue limit the sampled bracket must still give the exact mask."""
    from evo_merge.merge.sparsify import _smallest

    gen = torch.Generator().manual_seed(m)
    mag = torch.randn(3_000_000, generator=gen).abs()
    mag[::3] = 0.5  # a third of the values tie, some of them at the threshold
    got = _smallest(mag, m)
    threshold = torch.kthvalue(mag, m).values
    at = mag == threshold
    expected = (mag < threshold) | (at & (at.cumsum(0) <= m - (mag < threshold).sum()))
    assert torch.equal(got, expected) and int(got.sum()) == m
