"""Recipes: how an individual is made from its parents, as plain JSON-able data.

The engine plans recipes (every random choice drawn on the driver from the run's seeded
generator, the per-offspring seed included); whoever executes them (this process or a
Ray worker) builds the offspring with its operator. A recipe plus its parents' weights
rebuilds the offspring exactly. The lineage row of an individual *is* its recipe plus
what came of it (``store.lineage.Individual`` extends ``Recipe``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from evo_merge.genome import Genome


@dataclass
class Recipe:
    operator: str
    parents: list[int] = field(default_factory=list)
    method: str | None = None
    coefficients: list[float] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The recipe's own fields (also of an ``Individual``, which extends it)."""
        data = asdict(self)
        return {f.name: data[f.name] for f in fields(Recipe)}

    def recipe(self) -> "Recipe":
        return Recipe(**self.to_dict())


@dataclass
class Built:
    genome: Genome
    velocity: Genome | None = None


Fetch = Callable[[int], Genome]
FetchVelocity = Callable[[int], "Genome | None"]
