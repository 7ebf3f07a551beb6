"""mergekit 0.1.5's methods: values by hand on tiny tensors; each usable as a crossover (merge_genomes)."""

import math

import pytest
import torch
from test_merge_methods import T, delta

from evo_merge.errors import EvoMergeError
from evo_merge.merge import get_merge_method, merge_genomes

S = math.sqrt(0.5)


def run(name: str, tensors: list[torch.Tensor], weights: list[float], seed: int | None = None,
        base: torch.Tensor | None = None, **params: object) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return get_merge_method(name)(tensors, torch.tensor(weights, dtype=torch.float32), generator=gen, base=base,
                                  **params)


# ---- registry: space, base policy, parents, mergekit's defaults ------------------------------

TABLE = {  # name: (space, base, min_parents, max_parents, defaults)
    "linear": ("weights", "none", 1, None, {"normalize": True}),
    "task_arithmetic": ("delta", "required", 1, None, {"lambda_": 1.0, "normalize": False, "int8_mask": False}),
    "ties": ("delta", "required", 1, None, {"density": 1.0, "lambda_": 1.0, "normalize": True, "rescale": False,
                                            "int8_mask": False}),
    "dare_ties": ("delta", "required", 1, None, {"density": 1.0, "lambda_": 1.0, "normalize": False,
                                                 "rescale": True, "int8_mask": False}),
    "dare_linear": ("delta", "required", 1, None, {"density": 1.0, "lambda_": 1.0, "normalize": False,
                                                   "rescale": True, "int8_mask": False}),
    "breadcrumbs": ("delta", "required", 1, None, {"density": 1.0, "gamma": 0.01, "lambda_": 1.0,
                                                   "normalize": False, "rescale": False, "int8_mask": False}),
    "breadcrumbs_ties": ("delta", "required", 1, None, {"density": 1.0, "gamma": 0.01, "lambda_": 1.0,
                                                        "normalize": False, "rescale": False, "int8_mask": False}),
    "della": ("delta", "required", 1, None, {"density": 1.0, "epsilon": 0.15, "lambda_": 1.0, "normalize": True,
                                             "rescale": True, "int8_mask": False}),
    "della_linear": ("delta", "required", 1, None, {"density": 1.0, "epsilon": 0.15, "lambda_": 1.0,
                                                    "normalize": False, "rescale": True, "int8_mask": False}),
    "sce": ("delta", "required", 1, None, {"int8_mask": False, "select_topk": 1.0}),
    "model_stock": ("delta", "required", 2, None, {}),
    "slerp": ("weights", "required", 1, 2, {"t": 0.5}),
    "task_slerp": ("delta", "none", 2, 2, {"t": 0.5, "epsilon": 1e-8}),
    "nuslerp": ("weights", "optional", 2, 2, {"nuslerp_row_wise": False, "nuslerp_flatten": True}),
    "multislerp": ("weights", "optional", 1, None, {"normalize_weights": True, "eps": 1e-8}),
    "karcher": ("weights", "none", 1, None, {"max_iter": 10, "tol": 1e-5}),
    "nearswap": ("weights", "required", 1, 2, None),  # t is required, as in mergekit
    "arcee_fusion": ("weights", "required", 1, 2, {}),
    "passthrough": ("weights", "none", 1, 1, {"scale": None}),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_space_base_parents_and_defaults(name: str) -> None:
    m = get_merge_method(name)
    space, base, lo, hi, defaults = TABLE[name]
    assert (m.space, m.base, m.min_parents, m.max_parents) == (space, base, lo, hi)
    if defaults is None:
        with pytest.raises(EvoMergeError, match="parameter t: Field required"):
            m.resolve_params({})
    else:
        assert m.defaults == defaults
    assert "base" not in m.entry.params.model_fields


# ---- linear and the task-arithmetic family ---------------------------------------------------

def test_linear_unnormalized_is_the_weighted_sum() -> None:
    # 2*[1, 2] + 0.5*[3, -1] = [3.5, 3.5]; normalized: / 2.5
    assert torch.equal(run("linear", [T(1, 2), T(3, -1)], [2, 0.5], normalize=False), T(3.5, 3.5))
    torch.testing.assert_close(run("linear", [T(1, 2), T(3, -1)], [2, 0.5]), T(1.4, 1.4))


def test_family_ignores_the_base_of_its_delta_space() -> None:
    assert torch.equal(run("task_arithmetic", [T(1, 2), T(3, -1)], [2, 0.5], base=T(100, 100)), T(3.5, 3.5))


def test_ties_rescale_rules() -> None:
    # density 0.5 keeps [3, 0, 2, 0] of [3, -1, 2, 0.5]; L1 6.5 before, 5 after: x 1.3
    x = T(3, -1, 2, 0.5)
    assert torch.equal(run("ties", [x], [1], density=0.5), T(3, 0, 2, 0))
    torch.testing.assert_close(run("ties", [x], [1], density=0.5, rescale=True), T(3.9, 0, 2.6, 0))
    assert torch.equal(run("ties", [x], [1], density=0.5, rescale="inverse_density"), T(6, 0, 4, 0))


def test_per_model_density_list() -> None:
    # densities [0.5, 1]: x0 -> [3, 0, 2, 0], x1 kept whole; sum [1, .5, -2, 1] elects [+, +, -, +]
    # pos 0: x0 (3); pos 1: x1 (.5); pos 2: x1 (-4); pos 3: x1 (1); each over one agreeing weight 1
    x0, x1 = T(3, -1, 2, 0.5), T(-2, 0.5, -4, 1)
    assert torch.equal(run("ties", [x0, x1], [1, 1], density=[0.5, 1.0]), T(3, 0.5, -4, 1))
    # breadcrumbs with per-model gamma: x0 loses its largest (|3|) of 4 values, x1 nothing
    out = run("breadcrumbs", [x0, x1], [1, 1], density=[0.75, 1.0], gamma=[0.25, 0.0])
    assert torch.equal(out, T(-2, -0.5, -2, 1.5))
    # dare_linear: density 1 keeps parent 0 whole whatever the draw
    out = run("dare_linear", [x0, x1], [1, 0], seed=0, density=[1.0, 0.5])
    assert torch.equal(out, x0)


def test_breadcrumbs_default_keeps_everything() -> None:
    x0 = T(0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8, 0.9, -10)
    x1 = T(4, 3, 2, 1, -5, 0.5, 0.25, 6, -7, 8)
    torch.testing.assert_close(run("breadcrumbs", [x0, x1], [1, 0.5]), x0 + 0.5 * x1)


def test_dare_ties_mergekit_defaults_do_not_normalize() -> None:
    # weighted [1,-2], [3,1], [-2,-2]; signs [+, -]; agreeing sums [4, -4], not divided
    assert torch.equal(run("dare_ties", [T(1, -2), T(3, 1), T(-1, -1)], [1, 1, 2], seed=0), T(4, -4))


@pytest.mark.parametrize("name,params", [("dare_linear", {"density": 0.3}),
                                         ("della_linear", {"density": 0.4, "epsilon": 0.2})])
def test_l1_rescale_keeps_the_l1_norm(name: str, params: dict) -> None:
    x = torch.randn(40, 50, generator=torch.Generator().manual_seed(0))
    out = run(name, [x], [1], seed=1, **params)
    kept = out != 0
    assert 0 < int(kept.sum()) < x.numel()
    torch.testing.assert_close(out.abs().sum(), x.abs().sum())
    factor = float(x.abs().sum() / x[kept].abs().sum())  # one factor for every kept value
    torch.testing.assert_close(out[kept], x[kept] * factor)


# ---- della ------------------------------------------------------------------------------------

def test_della_keep_probability_follows_the_rank_within_each_row() -> None:
    # 4000 rows, each a shuffle of magnitudes 1..11: the value of rank r (0..10) is kept with
    # probability 0.5 - 0.15 + 0.3 * r / 10 (density 0.5, epsilon 0.15); the mean is 0.5
    g = torch.Generator().manual_seed(0)
    rows = torch.stack([torch.randperm(11, generator=g).float() + 1 for _ in range(4000)])
    out = run("della_linear", [rows], [1], seed=2, density=0.5, rescale=False)
    kept = (out != 0).float()
    assert torch.equal(out[kept.bool()], rows[kept.bool()])  # rescale False: kept values as they are
    for r in range(11):
        rate = float(kept[rows == r + 1].mean())
        assert abs(rate - (0.35 + 0.03 * r)) < 0.035, (r, rate)  # ~4.5 std of 4000 draws
    assert abs(float(kept.mean()) - 0.5) < 0.01


def test_della_inverse_density_divides_by_each_keep_probability() -> None:
    # one row [1, 2, 3], density 0.5, epsilon 0.2: probabilities [0.3, 0.5, 0.7]
    x = T(1, 2, 3)
    seen = set()
    for seed in range(40):
        out = run("della_linear", [x], [1], seed=seed, density=0.5, epsilon=0.2, rescale="inverse_density")
        for i, p in enumerate((0.3, 0.5, 0.7)):
            if out[i] != 0:
                torch.testing.assert_close(out[i], torch.tensor((i + 1) / p))
                seen.add(i)
    assert seen == {0, 1, 2}


def test_della_epsilon_must_fit_the_density() -> None:
    with pytest.raises(EvoMergeError, match=r"density 0.1 \+/- epsilon in \(0, 1\)"):
        run("della", [T(1, 2, 3)], [1], seed=0, density=0.1)


# ---- sce ---------------------------------------------------------------------------------------

def test_sce_by_hand() -> None:
    x0, x1, x2 = T(1, 2, 0, 1), T(1, -2, 0, 3), T(1, 0, 6, 2)
    # no selection: coefficients = mean squares [1.5, 3.5, 10.25] / 15.25; elected signs all +
    #   pos 0: all agree -> 1; pos 1: only x0 -> 2; pos 2: only x2 -> 6;
    #   pos 3: (1*1.5 + 3*3.5 + 2*10.25) / 15.25 = 32.5 / 15.25
    torch.testing.assert_close(run("sce", [x0, x1, x2], [5, 1, 1]), T(1, 2, 6, 32.5 / 15.25))
    # select_topk 0.7: variances [0, 8/3, 8, 2/3], 3 nonzero -> keep int(2.1) = 2: positions 1, 2
    #   masked x0 = [0,2,0,0], x1 = [0,-2,0,0], x2 = [0,0,6,0]; coefficients [1, 1, 9] / 11
    #   pos 1: sum 0 elects +, only x0 agrees -> 2; pos 2: 6
    torch.testing.assert_close(run("sce", [x0, x1, x2], [1, 1, 1], select_topk=0.7), T(0, 2, 6, 0))


# ---- spherical ---------------------------------------------------------------------------------

def test_slerp_with_a_base_interpolates_from_the_base_to_the_model() -> None:
    # mergekit's standard config: base [2, 0] (t=0) -> model [0, 3] (t=1); theta = pi/2
    torch.testing.assert_close(run("slerp", [T(0, 3)], [1], base=T(2, 0), t=0.5), T(2 * S, 3 * S))
    torch.testing.assert_close(run("slerp", [T(0, 3)], [1], base=T(2, 0), t=1 / 3),
                               T(2 * math.sin(math.pi / 3), 3 * 0.5))
    assert torch.equal(run("slerp", [T(0, 3)], [1], base=T(2, 0), t=0.0), T(2, 0))
    # colinear base and model: lerp, 0.75 * [1, 2] + 0.25 * [2, 4]
    torch.testing.assert_close(run("slerp", [T(2, 4)], [1], base=T(1, 2), t=0.25), T(1.25, 2.5))
    # without a base, one tensor: from the origin (cos 0): sin(t pi / 2) * x
    torch.testing.assert_close(run("slerp", [T(2, 4)], [1], t=1 / 3), T(1, 2))
    with pytest.raises(EvoMergeError, match="with a base needs exactly 1 other model, got 2"):
        run("slerp", [T(1, 0), T(0, 1)], [1, 1], base=T(1, 1))


def test_slerp_and_task_slerp_agree_in_evolution() -> None:
    a, b = delta(1), delta(2)
    for t in (0.0, 0.3, 1.0):
        x = merge_genomes("slerp", [a, b], [1, 1], params={"t": t})
        y = merge_genomes("task_slerp", [a, b], [1, 1], params={"t": t})
        assert torch.equal(x.flat, y.flat)


def test_nuslerp_by_hand() -> None:
    # weights [1, 3]: t = 0.75; orthogonal units: [sin(pi/8), sin(3pi/8)]
    want = T(math.sin(math.pi / 8), math.sin(3 * math.pi / 8))
    torch.testing.assert_close(run("nuslerp", [T(1, 0), T(0, 1)], [1, 3]), want)
    # with a base: base + the slerp of the task vectors
    torch.testing.assert_close(run("nuslerp", [T(2, 1), T(1, 2)], [1, 3], base=T(1, 1)), want + 1)
    # per row (flatten off): row 0 orthogonal, row 1 colinear -> lerp 0.25 [1, 0] + 0.75 [2, 0]
    x0, x1 = torch.tensor([[1.0, 0], [1, 0]]), torch.tensor([[0.0, 1], [2, 0]])
    out = run("nuslerp", [x0, x1], [1, 3], nuslerp_flatten=False)
    torch.testing.assert_close(out, torch.stack([want, T(1.75, 0)]))
    # zero weights: t = 0.5
    torch.testing.assert_close(run("nuslerp", [T(1, 0), T(0, 1)], [0, 0]), T(S, S))


def test_multislerp_by_hand() -> None:
    # orthogonal [2, 0], [0, 4], equal weights: the mean direction [S, S], tangent sum 0, times
    # the weighted mean norm 3
    torch.testing.assert_close(run("multislerp", [T(2, 0), T(0, 4)], [1, 1]), T(3 * S, 3 * S))
    # weights [3, 1] (normalized .75, .25): direction [3, 1] / sqrt(10), norm 1; over a base
    want = T(3, 1) / math.sqrt(10)
    torch.testing.assert_close(run("multislerp", [T(2, 1), T(1, 2)], [3, 1], base=T(1, 1)), want + 1)
    assert torch.equal(run("multislerp", [T(5, 6)], [1]), T(5, 6))


def test_karcher_of_two_vectors_is_the_normalized_midpoint_times_the_mean_norm() -> None:
    torch.testing.assert_close(run("karcher", [T(1, 0), T(0, 1)], [1, 1]), T(S, S))
    # norms 2 and 4: mean norm 3; weights are ignored (mergekit's karcher takes none)
    torch.testing.assert_close(run("karcher", [T(2, 0), T(0, 4)], [9, 1]), T(3 * S, 3 * S))
    # 3 vectors at 0, 60 and 120 degrees: the mean direction is 60 degrees, mean norm 1
    c = math.cos(math.pi / 3)
    out = run("karcher", [T(1, 0), T(c, math.sin(math.pi / 3)), T(-c, math.sin(math.pi / 3))], [1, 1, 1])
    torch.testing.assert_close(out, T(c, math.sin(math.pi / 3)), atol=1e-5, rtol=1e-5)


# ---- nearswap, arcee_fusion, passthrough -----------------------------------------------------

def test_nearswap_by_hand() -> None:
    # |base - x| = [.05, .5, 2, 0]; weight = clamp(.1 / d): [1, .2, .05, 1]
    base, x = T(1, 1, 1, 1), T(1.05, 1.5, 3, 1)
    want = T(1.05, 0.2 * 1.5 + 0.8, 0.05 * 3 + 0.95, 1)
    torch.testing.assert_close(run("nearswap", [x], [1], base=base, t=0.1), want)
    # evolution: tensors[0] plays the base
    torch.testing.assert_close(run("nearswap", [base, x], [1, 1], t=0.1), want)
    # one tensor, no base: the origin is the base: |x| = [1, 2], weight [.5, .25]
    torch.testing.assert_close(run("nearswap", [T(1, -2)], [1], t=0.5), T(0.5, -0.5))


def test_arcee_fusion_by_hand() -> None:
    # one row: importance = |x - base| * KL (one positive number), so the threshold picks by |x - base|:
    # sorted |diff| [.1 .1 .1 .2 .2 .2 .3 3]: q1 = [int(.25*7)] = .1, median [3] = .2, q3 [5] = .2
    # threshold .2 + 1.5 * .1 = .35: only the 3.0 difference is taken from x
    base = torch.arange(1, 9, dtype=torch.float32) / 10
    diff = T(0.1, 0.2, 0.1, 0.3, 0.2, 0.1, 0.2, 3.0)
    want = base.clone()
    want[7] += 3.0
    assert torch.equal(run("arcee_fusion", [base + diff], [1], base=base), want)
    assert torch.equal(run("arcee_fusion", [base, base + diff], [1, 1]), want)
    # no base, one tensor: the origin is the base
    assert torch.equal(run("arcee_fusion", [diff], [1]), T(0, 0, 0, 0, 0, 0, 0, 3.0))


def test_passthrough_returns_its_input() -> None:
    x = T(1, -2, 3)
    assert torch.equal(run("passthrough", [x], [1]), x)
    assert torch.equal(run("passthrough", [x], [1], scale=0.5), T(0.5, -1, 1.5))
    assert torch.equal(run("passthrough", [x], [1], scale=[2.0]), T(2, -4, 6))
    with pytest.raises(EvoMergeError, match="needs exactly 1 parents, got 2"):
        run("passthrough", [x, x], [1, 1])


# ---- every method as a crossover (task vectors, base None) -----------------------------------

CROSSOVERS = {"della": {"density": 0.6}, "della_linear": {"density": 0.6, "epsilon": [0.1, 0.2, 0.3]},
              "sce": {"select_topk": 0.5}, "nuslerp": {}, "multislerp": {}, "karcher": {}, "nearswap": {"t": 0.2},
              "arcee_fusion": {}, "task_slerp": {"t": 0.3}, "slerp": {"t": 0.3},
              "dare_ties": {"density": [0.5, 0.7, 0.9]}, "breadcrumbs_ties": {"density": 0.8, "gamma": 0.05}}


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
def test_usable_as_crossover(name: str) -> None:
    m = get_merge_method(name)
    k = 2 if m.max_parents == 2 else 3
    parents = [delta(i) for i in range(1, k + 1)]
    params = CROSSOVERS[name]
    out = merge_genomes(name, parents, [0.2, 0.5, 0.3][:k], seed=5, params=params)
    again = merge_genomes(name, parents, [0.2, 0.5, 0.3][:k], seed=5, params=params)
    assert out.layout == parents[0].layout and torch.equal(out.flat, again.flat)
    assert bool(torch.isfinite(out.flat).all()) and not torch.equal(out.flat, parents[0].flat)


def test_passthrough_in_evolution() -> None:
    p = delta(3)
    assert torch.equal(merge_genomes("passthrough", [p], [1]).flat, p.flat)
    torch.testing.assert_close(merge_genomes("passthrough", [p], [1], params={"scale": 2}).flat, 2 * p.flat)


@pytest.mark.parametrize("name", ["slerp", "task_slerp"])
def test_crossover_sets_slerp_t_from_the_coefficients(name: str) -> None:
    import numpy as np

    from evo_merge.operators.base import PlanContext
    from evo_merge.operators.crossover import CrossoverConfig, crossover_recipe

    cfg = CrossoverConfig(methods=[{"method": name}])
    recipe = crossover_recipe(cfg, PlanContext(np.random.default_rng(0), None, ("a",)), [3, 5], [1.0, 3.0])
    assert recipe.method == name and recipe.params["t"] == 0.75
