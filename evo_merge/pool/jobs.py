"""The unit of work the engine hands to an executor, and the executor interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from evo_merge.fitness.evaluator import Evaluation
from evo_merge.operators.recipes import Recipe


@dataclass
class Job:
    """Build an offspring from ``recipe`` (or take stored ``weights``) and score it on ``split``.

    ``inputs`` maps each individual the recipe names to its weight hash, and
    ``velocities`` to its velocity hash where it has one, so a worker needs only the
    weight store, never the lineage database. ``persist=False`` scores a candidate without
    storing it (a coefficient search's trial merges); ``loss=True`` also measures the
    answer loss on the split.
    """

    recipe: Recipe | None = None
    weights: str | None = None
    split: str = "fitness"
    inputs: dict[int, str] = field(default_factory=dict)
    velocities: dict[int, str] = field(default_factory=dict)
    persist: bool = True
    loss: bool = False


@dataclass
class JobResult:
    weights: str  # content hash; "" for a job with persist=False
    velocity: str | None
    evaluation: Evaluation
    build_seconds: float
    worker: str
    node: str = ""


class Executor(Protocol):
    """Runs jobs; results come back in job order, whichever worker ran them."""

    def run(self, jobs: Sequence[Job], on_done: Callable[[JobResult], None] | None = None) -> list[JobResult]: ...

    def ensemble(self, weights: Sequence[str], split: str) -> Evaluation: ...

    def close(self) -> None: ...
