"""What the operators did: how many mutants scored differently from their parent (a mutation
that changes nothing only costs an evaluation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass
class MutationEffect:
    mutants: int
    changed: int  # fitness differs from the parent's

    @property
    def share(self) -> float:
        return self.changed / self.mutants if self.mutants else 0.0

    def text(self) -> str:
        if not self.mutants:
            return "no mutants"
        return f"{self.changed} of {self.mutants} mutants ({self.share:.0%}) scored differently from their parent"


def mutation_effect(rows: Sequence) -> MutationEffect:
    """Mutants: ``mutation`` individuals and member nudges (compositions planned by mutation)."""
    fitness = {r.id: r.fitness for r in rows}
    mutants = [r for r in rows if r.operator == "mutation" or (r.params or {}).get("origin") == "mutation"]
    changed = sum(1 for r in mutants if r.parents and fitness.get(r.parents[0]) != r.fitness)
    return MutationEffect(len(mutants), changed)
