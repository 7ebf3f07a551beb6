"""SVD mutation (as CycleQD's): each module's weight update U diag(S) V^T keeps its singular
directions and gets its singular values scaled by log-normal factors exp(sigma * N(0, 1)).

It moves an individual along the directions its update already has, in proportion to
their strength, so a step changes the behaviour without adding unstructured noise:
- exact LoRA: the update B A_cat, decomposed in the members' basis (exact, stays there);
- LoRA factors: the update B A, refactored as B' = U sqrt(S'), A' = sqrt(S') V^T;
- full-weight deltas: the top singular values of each matrix (a seeded randomized SVD).
The same seed gives the same mutant; linear algebra runs on one thread (same bits anywhere).
"""

from __future__ import annotations

import torch

from evo_merge.genome import Genome
from evo_merge.merge.lora_exact import LORA_A, LORA_B, one_thread

TOP_K = 8  # full-weight deltas: singular values perturbed per matrix


def svd_mutate(genome: Genome, *, seed: int, sigma: float) -> Genome:
    gen = torch.Generator().manual_seed(seed)
    tensors = genome.tensors()
    out = dict(tensors)
    kind = genome.layout.kind
    for name in genome.layout.names:  # sorted: draws happen in one fixed order
        t = tensors[name]
        if kind == "lora_exact" and name.endswith(LORA_B):
            u, s, vh, chol = genome.basis.svd(name, t)
            out[name] = genome.basis.from_svd(u, s * _factors(len(s), sigma, gen), vh, chol).to(t.dtype)
        elif kind == "lora" and name.endswith(LORA_A):
            b_name = name[: -len(LORA_A)] + LORA_B
            out[name], out[b_name] = _mutate_factors(t, tensors[b_name], sigma, gen)
        elif kind == "delta" and t.dim() == 2 and min(t.shape) > 1:
            out[name] = _mutate_matrix(t, sigma, gen)
    flat = torch.cat([out[n].reshape(-1).to(genome.layout.dtype) for n in genome.layout.names])
    return genome.with_flat(flat)


def _factors(n: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    return torch.exp(sigma * torch.randn(n, generator=gen, dtype=torch.float64))


def _mutate_factors(a: torch.Tensor, b: torch.Tensor, sigma: float, gen: torch.Generator):
    """B A = U S V^T from QR(A^T) and an SVD of B R^T (r x r work); refactored with S scaled."""
    with one_thread():
        q, r = torch.linalg.qr(a.double().T.cpu())            # A^T = Q R
        u, s, vh = torch.linalg.svd(b.double().cpu() @ r.T, full_matrices=False)
    root = (s * _factors(len(s), sigma, gen)).sqrt()
    new_b = (u * root).to(b.device, b.dtype)
    new_a = (root[:, None] * (vh @ q.T)).to(a.device, a.dtype)
    return new_a, new_b


def _mutate_matrix(w: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    k = min(TOP_K, *w.shape)
    seed = int(torch.randint(2**62, (1,), generator=gen))
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(seed)  # svd_lowrank draws its test matrix from the global generator
        u, s, v = torch.svd_lowrank(w.double().cpu(), q=k, niter=4)
    scaled = s * (_factors(k, sigma, gen) - 1.0)
    return (w.double().cpu() + (u * scaled) @ v.T).to(w.device, w.dtype)
