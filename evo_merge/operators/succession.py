"""Succession: a particle-swarm step (GENOME+, Model Swarms) on genomes' flat buffers.

    v' = (r0*phi_i*v + r1*phi_c*(p - x) + r2*phi_s*(g - x) - r3*phi_r*(w - x)) / C
    x' = x + step * v'

with p the individual's own best, g the global best, w the global worst, r fresh
uniform draws from the step's seed, and C = r0*phi_i + r1*phi_c + r2*phi_s + r3*phi_r.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evo_merge.genome import Genome


@dataclass(frozen=True)
class SwarmWeights:
    inertia: float = 0.2
    cognitive: float = 0.2
    social: float = 0.2
    repel: float = 0.1


def swarm_randoms(seed: int) -> list[float]:
    """The four uniform factors r0..r3 of one step, from its recorded seed."""
    return [float(r) for r in np.random.default_rng(seed).random(4)]


def swarm_step(x: Genome, v: Genome | None, p: Genome, g: Genome, w: Genome, *,
               r: list[float], phi: SwarmWeights, step: float) -> tuple[Genome, Genome]:
    """One swarm move of ``x`` with velocity ``v`` (None = zero); returns (x', v')."""
    xf = x.flat.float()
    c = [r[0] * phi.inertia, r[1] * phi.cognitive, r[2] * phi.social, r[3] * phi.repel]
    norm = sum(c) or 1.0
    vel = torch.zeros_like(xf) if v is None else v.flat.float() * c[0]
    vel.add_(p.flat.float() - xf, alpha=c[1])
    vel.add_(g.flat.float() - xf, alpha=c[2])
    vel.sub_(w.flat.float() - xf, alpha=c[3])
    vel.div_(norm)
    return x.with_flat(xf + step * vel), x.with_flat(vel)
