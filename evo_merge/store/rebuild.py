"""Rebuild individuals the weight store does not hold from their recorded recipes.

A run writes the weights of its members and of the individuals its checkpoints need (see
``engine/persistence.py``); every other individual is a pure function of its recipe
(operator, method, coefficients, parameters, seed) and its parents' weights (and, for a
swarm step, the moved individual's velocity). ``Rebuilder`` makes an individual again from
the stored weights of its ancestors, rebuilding missing ones recursively down to the
members, which are always stored. ``RunStore`` uses it so that reading any recorded hash
works (``export``, ``eval``), and ``replay`` uses it to check an individual bit for bit.
"""

from __future__ import annotations

import sys

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.operators.base import build
from evo_merge.operators.recipe import Built
from evo_merge.store.lineage import Individual


class Rebuilder:
    """Makes individuals again from their recipes; stored weights are used where present."""

    def __init__(self, store, device: str | torch.device = "cpu"):
        self.store, self.device = store, torch.device(device)
        self.rows: dict[int, Individual] = {i.id: i for i in store.lineage.all()}
        self._built: dict[int, Built] = {}
        self.rebuilt = 0

    def row(self, ind_id: int) -> Individual:
        if ind_id not in self.rows:
            raise EvoMergeError(f"no individual {ind_id} in {self.store.root}")
        return self.rows[ind_id]

    def _stored(self, digest: str) -> bool:
        return self.store.weights.path(digest).is_file()

    def genome(self, ind_id: int) -> Genome:
        """The individual's weights: its stored file, or rebuilt when the file was not written."""
        ind = self.row(ind_id)
        if self._stored(ind.weights):
            return self.store.weights.load(ind.weights, device=self.device)
        if ind.operator == "member":
            raise EvoMergeError(f"member {ind.id} ({ind.name}): weight file missing: "
                                f"{self.store.weights.path(ind.weights)}")
        return self.build(ind_id).genome

    def velocity(self, ind_id: int) -> Genome | None:
        ind = self.row(ind_id)
        if ind.velocity is None:
            return None
        if self._stored(ind.velocity):
            return self.store.weights.load(ind.velocity, device=self.device)
        return self.build(ind_id).velocity

    def build(self, ind_id: int) -> Built:
        """Make the individual from its recipe (members cannot be rebuilt: they are the roots)."""
        if ind_id not in self._built:
            ind = self.row(ind_id)
            if ind.operator == "member":
                raise EvoMergeError(f"individual {ind_id} is a member: it has no recipe to replay")
            limit = sys.getrecursionlimit()  # a long unwritten ancestry recurses deeply
            sys.setrecursionlimit(max(limit, 20 * len(self.rows) + 1000))
            try:
                self._built[ind_id] = build(ind, self.genome, self.velocity)
            finally:
                sys.setrecursionlimit(limit)
            self.rebuilt += 1
        return self._built[ind_id]

    def by_hash(self, digest: str) -> Genome | None:
        """The genome (or velocity) of hash ``digest``, rebuilt from the first individual that
        has it and checked against it; None when no individual has it."""
        for ind in self.rows.values():
            if digest in (ind.weights, ind.velocity) and ind.operator != "member":
                built = self.build(ind.id)
                genome = built.genome if digest == ind.weights else built.velocity
                if genome is None or genome.content_hash() != digest:
                    raise EvoMergeError(f"individual {ind.id} of {self.store.root} does not rebuild to its "
                                        f"recorded hash {digest[:12]} on {self.device}")
                return genome
        return None
