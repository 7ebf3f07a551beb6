"""The unit of work the engine hands to an executor, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field

from evo_merge.fitness.evaluator import Evaluation
from evo_merge.operators.recipe import Recipe


@dataclass
class Job:
    """Build an offspring from ``recipe`` (or take stored ``weights``) and score it on ``split``;
    or, with ``ensemble``, score the output ensemble of those stored individuals.

    ``inputs`` maps each individual the recipe names to its weight hash, and
    ``velocities`` to its velocity hash where it has one, so a worker needs only the
    weight store, never the lineage database. ``persist=False`` scores a candidate without
    storing it (a coefficient search's trial merges); ``loss=True`` also measures the
    answer loss on the split; ``predictions=True`` sends the per-example predictions back
    (they stay on the worker otherwise).

    Storage: a built individual is always hashed (``persist``), but written to the weight
    store only with ``write=True``; the engine builds offspring with ``write=False`` and
    writes the ones a checkpoint needs when the generation closes. A job on stored
    ``weights`` writes them only with ``store_weights=True`` (if they are not written yet). ``rebuild`` maps the hash
    of every individual (or velocity) the job may read that is not in the weight store to
    the recipe that makes it again (``RebuildEntry``): a worker takes such a genome from its
    cache, or rebuilds it (recursively) and checks it against the hash. ``score=False``:
    nothing is scored; the job only makes sure ``weights`` is written (a checkpoint's
    survivors).
    """

    recipe: Recipe | None = None
    weights: str | None = None
    split: str = "fitness"
    inputs: dict[int, str] = field(default_factory=dict)
    velocities: dict[int, str] = field(default_factory=dict)
    persist: bool = True
    loss: bool = False
    ensemble: list[str] | None = None
    predictions: bool = False
    write: bool = True
    store_weights: bool = False
    rebuild: dict[str, "RebuildEntry"] = field(default_factory=dict)
    score: bool = True

    def reads(self) -> list[str]:
        """The hashes this job names directly (parents, velocities, stored weights, ensemble)."""
        return [h for h in (*self.inputs.values(), *self.velocities.values(), self.weights, *(self.ensemble or ()))
                if h]

    def batches_with(self, other: "Job") -> bool:
        """Whether ``other`` may be scored in one batched pass with this job (multi-LoRA)."""
        plain = not (self.loss or other.loss or self.ensemble is not None or other.ensemble is not None
                     or not self.score or not other.score)
        return plain and self.split == other.split


@dataclass
class RebuildEntry:
    """How to make an individual that is not in the weight store again: its recipe, the hashes
    of what the recipe names, and the weight (and velocity) hashes the result must have."""

    recipe: Recipe
    inputs: dict[int, str]
    velocities: dict[int, str]
    weights: str
    velocity: str | None = None


@dataclass
class JobResult:
    weights: str  # content hash; "" for a job with persist=False or an ensemble
    velocity: str | None
    evaluation: Evaluation
    build_seconds: float
    worker: str
    node: str = ""
