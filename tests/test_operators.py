"""Operators: parent choice, coefficients, mutation, selection, succession."""

import numpy as np
import pytest
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.operators.coefficients import COEFFICIENTS
from evo_merge.operators.mutation import mutate
from evo_merge.operators.parents import choose_parents
from evo_merge.operators.selection import elite_count, select_survivors
from evo_merge.operators.succession import SwarmWeights, swarm_randoms, swarm_step
from evo_merge.operators.weighting import positive_weights


def genome(values, kind="delta"):
    t = torch.tensor(values, dtype=torch.float32)
    return Genome.from_tensors({"a": t[:2].clone(), "b": t[2:].clone()}, kind)


def test_mutation_is_reproducible_from_seed_and_touches_about_rate_of_weights():
    g = Genome.from_tensors({"w": torch.zeros(100_000)}, "delta")
    m1 = mutate(g, seed=7, weight_rate=0.01, sigma=0.5)
    m2 = mutate(g, seed=7, weight_rate=0.01, sigma=0.5)
    m3 = mutate(g, seed=8, weight_rate=0.01, sigma=0.5)
    assert m1.content_hash() == m2.content_hash()
    assert m1.content_hash() != m3.content_hash()
    changed = (m1.flat != 0).float().mean().item()
    assert 0.008 < changed < 0.012
    assert abs(m1.flat[m1.flat != 0].std().item() - 0.5) < 0.05
    assert torch.count_nonzero(g.flat) == 0  # parent untouched


def test_relative_mutation_scales_with_tensor_rms():
    g = Genome.from_tensors({"big": torch.full((50_000,), 10.0), "small": torch.full((50_000,), 0.1)}, "delta")
    m = mutate(g, seed=1, weight_rate=1.0, sigma=0.1, sigma_mode="relative")
    d = (m.flat - g.flat)
    assert abs(d[:50_000].std().item() - 1.0) < 0.05   # big tensor: rms 10 -> sigma 1.0
    assert abs(d[50_000:].std().item() - 0.01) < 0.001


def test_selection_keeps_elites_for_every_method():
    fit = np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.05, 0.4, 0.7])
    for method in ("tournament", "roulette", "rank", "elites"):
        for seed in range(20):
            keep = select_survivors(method, fit, 4, np.random.default_rng(seed), elite_fraction=0.25)
            assert len(keep) == 4 == len(set(keep))
            assert 1 in keep  # the single fittest
    assert elite_count(0.1, 5) == 1  # GENOME's default would give 0 for N < 50
    assert elite_count(0.0, 5) == 0


def test_truncation_keeps_the_fittest():
    fit = np.array([0.1, 0.9, 0.3, 0.8])
    assert select_survivors("elites", fit, 2, np.random.default_rng(0), elite_fraction=0) == [1, 3]


def test_roulette_parents_favour_fitness_and_are_distinct():
    fit = np.array([0.0, 0.0, 1.0, 3.0])
    rng = np.random.default_rng(0)
    counts = np.zeros(4)
    for _ in range(2000):
        a, b = choose_parents("roulette", fit, 2, rng)
        assert a != b
        counts[[a, b]] += 1
    assert counts[3] > counts[2] > counts[0]


def test_parent_selection_errors():
    with pytest.raises(EvoMergeError, match="unknown parent selection"):
        choose_parents("bogus", np.ones(3), 2, np.random.default_rng(0))
    with pytest.raises(EvoMergeError, match="needs 3 parents"):
        choose_parents("random", np.ones(2), 3, np.random.default_rng(0))


def test_fitness_coefficients_are_normalised_fitness():
    coeffs = COEFFICIENTS.get("fitness")(np.array([0.6, 0.2]), np.random.default_rng(0))
    assert coeffs == pytest.approx([0.75, 0.25])
    assert positive_weights(np.array([-1.0, -1.0])) == pytest.approx([0.5, 0.5])
    w = positive_weights(np.array([-2.0, 0.0, 2.0]))
    assert w.sum() == pytest.approx(1) and (w > 0).all() and w[2] > w[1] > w[0]
    rand = COEFFICIENTS.get("random")(np.zeros(3), np.random.default_rng(0))
    assert sum(rand) == pytest.approx(1) and min(rand) > 0


def test_swarm_step_matches_hand_computation():
    x, v = genome([0.0, 0.0, 0.0, 0.0]), genome([1.0, 0.0, 0.0, 0.0])
    p, g, w = genome([0.0, 2.0, 0.0, 0.0]), genome([0.0, 0.0, 4.0, 0.0]), genome([0.0, 0.0, 0.0, 8.0])
    r = [1.0, 0.5, 0.25, 0.5]
    phi = SwarmWeights(0.2, 0.2, 0.2, 0.1)
    # c = [0.2, 0.1, 0.05, 0.05], C = 0.4; v' = (0.2*1, 0.1*2, 0.05*4, -0.05*8) / 0.4
    x2, v2 = swarm_step(x, v, p, g, w, r=r, phi=phi, step=0.5)
    assert v2.flat.tolist() == pytest.approx([0.5, 0.5, 0.5, -1.0])
    assert x2.flat.tolist() == pytest.approx([0.25, 0.25, 0.25, -0.5])


def test_swarm_own_best_term_is_real():
    """With p != x the cognitive term moves x toward p even with no velocity and g = w = x."""
    x, p = genome([0.0, 0.0, 0.0, 0.0]), genome([1.0, 1.0, 1.0, 1.0])
    x2, _ = swarm_step(x, None, p, x, x, r=[0.5, 0.5, 0.5, 0.5], phi=SwarmWeights(), step=1.0)
    assert (x2.flat > 0).all()


def test_swarm_randoms_fresh_per_seed_and_reproducible():
    assert swarm_randoms(1) == swarm_randoms(1)
    assert swarm_randoms(1) != swarm_randoms(2)
