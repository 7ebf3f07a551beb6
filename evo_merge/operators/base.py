"""What every operator module provides, and the registry of operators.

An operator is one way of making an individual (crossover, composition, mutation,
succession, ...). Its module holds everything about it: the config section and the typed
parameters it stores in a recipe (pydantic models), how the engine plans it, how a worker
builds it, the role of each parent (for lineage drawings) and whether and how it exports
to a mergekit config. Store, export, replay and drawing code ask the operator instead of
matching operator names. A new operator is one class registered with ``@OPERATORS.register``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from evo_merge.errors import EvoMergeError
from evo_merge.operators.recipe import Built, Fetch, FetchVelocity, Recipe
from evo_merge.registry import Registry, param_error

SEED_BOUND = 2**62


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass
class PlanContext:
    """What planning needs besides fitness: the run's seeded generator and the genome's shape."""

    rng: np.random.Generator
    lora_mode: str | None   # LoRA genomes with both factors: "factors" or "product" (recorded per recipe)
    names: tuple[str, ...]

    def seed(self) -> int:
        """A fresh per-offspring seed, recorded in the recipe."""
        return int(self.rng.integers(SEED_BOUND))


@dataclass
class MergekitForm:
    """A mergekit config for an individual (``config``), or why there is none (``note`` alone)."""

    config: dict[str, Any] | None
    note: str | None = None


Refs = Callable[["str | None"], str]   # member name (None: the base) -> how to name it outside this machine


class Operator:
    """Base class: defaults for operators that merge nothing and export nowhere."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = Strict   # what a recipe of this operator stores
    Config: ClassVar[type[BaseModel]] = Strict   # its settings as an ``evolution.operators`` entry
    color: ClassVar[str] = "#eeeeee"

    @classmethod
    def plan(cls, ctx: PlanContext, population: Sequence[int], fitness: np.ndarray, config: Any) -> list[Recipe]:
        """The offspring this operator makes in one generation when ``evolution.operators`` lists it
        (``config``: its ``Config``). The built-in operators are planned by the engine's planner."""
        raise EvoMergeError(f"operator {cls.name!r} plans nothing by itself; it cannot be listed in "
                            "evolution.operators")

    @classmethod
    def params(cls, recipe: Recipe) -> Any:
        """The recipe's parameters as the operator's typed model (one-line error if malformed)."""
        try:
            return cls.Params.model_validate(recipe.params or {})
        except ValidationError as exc:
            raise EvoMergeError(f"{cls.name} recipe: {param_error(exc, cls.Params)}") from None

    @classmethod
    def build(cls, recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
        raise EvoMergeError(f"operator {cls.name!r} makes no offspring")

    @classmethod
    def roles(cls, recipe: Recipe) -> list[str]:
        """A label for each parent position: what that parent was to the child."""
        return [""] * len(recipe.parents)

    @classmethod
    def coefficients_text(cls, recipe: Recipe) -> str:
        return ", ".join(f"{c:.3f}" for c in recipe.coefficients) if recipe.coefficients else ""

    @classmethod
    def own_best_sources(cls, recipe: Recipe) -> list[int]:
        """Parents whose own-best the child inherits (it continues their search)."""
        return list(recipe.parents)

    @classmethod
    def mergekit(cls, recipe: Recipe, parents: Sequence[Any], refs: Refs, dtype: str) -> MergekitForm:
        return MergekitForm(None, f"no mergekit config: history includes {cls.name}")


OPERATORS: Registry[type[Operator]] = Registry(
    "operator", builtins=("evo_merge.operators.member", "evo_merge.operators.crossover",
                          "evo_merge.operators.composition", "evo_merge.operators.mutation",
                          "evo_merge.operators.succession"))


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: add an operator to the registry under its ``name``."""
    OPERATORS.add(cls.name, cls)
    return cls


def operator(name: str) -> type[Operator]:
    return OPERATORS.get(name)


def build(recipe: Recipe, fetch: Fetch, fetch_velocity: FetchVelocity) -> Built:
    """Make the offspring a recipe describes; ``fetch`` returns an individual's genome by id."""
    return operator(recipe.operator).build(recipe, fetch, fetch_velocity)
