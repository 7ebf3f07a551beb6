"""Seeded Gaussian mutation of a genome's flat buffer, on the genome's device."""

from __future__ import annotations

import torch

from evo_merge.genome import Genome


def mutate(genome: Genome, *, seed: int, weight_rate: float = 0.01, sigma: float = 0.01,
           sigma_mode: str = "absolute") -> Genome:
    """Add N(0, sigma^2) noise to each weight with probability ``weight_rate``.

    ``sigma_mode="relative"`` scales sigma by each tensor's root-mean-square, so large
    and small tensors are perturbed in proportion. The same seed gives the same mutant.
    """
    flat = genome.flat
    gen = torch.Generator(device=flat.device).manual_seed(seed)
    n = flat.numel()
    mask = torch.rand(n, generator=gen, device=flat.device) < weight_rate
    noise = torch.randn(n, generator=gen, device=flat.device).mul_(sigma)
    if sigma_mode == "relative":
        noise.mul_(_per_tensor_rms(genome))
    return genome.with_flat(flat.to(torch.float32, copy=True).addcmul_(noise, mask))


def _per_tensor_rms(genome: Genome) -> torch.Tensor:
    """A flat vector holding, at each position, the RMS of the tensor it belongs to."""
    flat = genome.flat.float()
    sizes = torch.tensor([b - a for a, b in genome.layout.offsets()], device=flat.device)
    rms = torch.stack([flat[a:b].pow(2).mean().sqrt() for a, b in genome.layout.offsets()])
    return torch.repeat_interleave(rms, sizes)
