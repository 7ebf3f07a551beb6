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

    def batches_with(self, other: "Job") -> bool:
        """Whether ``other`` may be scored in one batched pass with this job (multi-LoRA)."""
        plain = not (self.loss or other.loss or self.ensemble is not None or other.ensemble is not None)
        return plain and self.split == other.split


@dataclass
class JobResult:
    weights: str  # content hash; "" for a job with persist=False or an ensemble
    velocity: str | None
    evaluation: Evaluation
    build_seconds: float
    worker: str
    node: str = ""
