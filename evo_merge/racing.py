"""Racing's rules (``evolution.racing``): what an individual has been scored on so far, and
whether it goes on to the next stage of the fitness rows. Stages are fractions of every
task's fitness rows (default a quarter, a half, all), scored in order.

- ``halving`` (successive halving, as ASHA): after each stage, the fittest ``keep`` share
  of the offspring still racing go on, ranked on the rows scored so far (the same rows for
  all of them). Ties go to the earlier offspring.
- ``estimate``: an offspring goes on while its fitness on the rows scored so far is at
  least the cut individual's fitness on the same rows, less ``margin`` (a paired
  comparison: what the rows have in common cancels).
- ``hoeffding``: it goes on while an optimistic estimate of its whole-set fitness (the rows
  scored, plus the rest at the upper confidence bound of its rate so far, failure
  probability ``delta``) reaches the cut's whole-set fitness. Sound, but it can stop only
  offspring far below the cut.

Coefficient-search candidates (``search``): ``race`` scores them stage by stage while they
can still reach the best candidate scored on every row (``estimate`` against its whole-set
fitness, as a told candidate's per-row scores are not kept; ``hoeffding`` with the bound;
``halving`` as ``estimate``); ``first_stage`` scores them on the first stage only and the
search result, an individual, on every row; ``full`` on every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from evo_merge.config import RacingConfig
from evo_merge.fitness.evaluator import Evaluation
from evo_merge.pool.jobs import JobResult


def stage_split(lo: float, hi: float) -> str:
    return "fitness" if (lo, hi) == (0.0, 1.0) else f"fitness[{lo:g}:{hi:g}]"


@dataclass
class Partial:
    """What one individual or candidate has been scored on so far."""

    first: JobResult
    examples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    seconds: float = 0.0
    stages: int = 0

    def add(self, ev: Evaluation) -> None:
        for name, scores in ev.example_scores.items():
            self.examples.setdefault(name, []).append(np.asarray(scores, dtype=float))
        self.seconds += ev.seconds
        self.stages += 1

    def scored(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.examples.items()}

    def rows(self) -> int:
        return sum(len(s) for s in self.scored().values())

    def result(self, weights: dict[str, float]) -> JobResult:
        """The job result with the evaluation of every row scored so far."""
        scored = self.scored()
        task_scores = {name: float(s.mean()) for name, s in scored.items()}
        ev = Evaluation(float(sum(weights[n] * v for n, v in task_scores.items())), task_scores, scored, {},
                        self.seconds)
        f = self.first
        return JobResult(f.weights, f.velocity, ev, f.build_seconds, f.worker, f.node)


@dataclass
class Racer:
    """A racing configuration applied to the engine's fitness tasks."""

    cfg: RacingConfig
    weights: dict[str, float]   # normalised task weights
    totals: dict[str, int]      # fitness rows per task

    def splits(self) -> list[str]:
        bounds = [0.0, *self.cfg.stages]
        return [stage_split(lo, hi) for lo, hi in zip(bounds, bounds[1:])]

    def complete(self, p: Partial) -> bool:
        return p.rows() == sum(self.totals.values())

    def fitness(self, scored: dict[str, np.ndarray]) -> float:
        return sum(self.weights[name] * float(s.mean()) for name, s in scored.items() if len(s))

    def optimistic(self, scored: dict[str, np.ndarray]) -> float:
        """Upper estimate of the whole-set fitness: rows scored, the rest at the rate's UCB."""
        value = 0.0
        for name, scores in scored.items():
            n, total = len(scores), self.totals[name]
            bound = math.sqrt(math.log(1 / self.cfg.delta) / (2 * n)) if n else 1.0
            rate = min(1.0, float(scores.mean()) + bound) if n else 1.0
            value += self.weights[name] * (float(scores.sum()) + rate * (total - n)) / total
        return value

    def next_stage(self, racing: dict[int, Partial], cut: float, cut_examples: np.ndarray | None) -> list[int]:
        """Which of ``racing`` (offspring by index) go on to the next stage, in index order."""
        if self.cfg.rule == "halving":  # the fittest share (ties: the earlier)
            ranked = sorted(racing, key=lambda i: (-self.fitness(racing[i].scored()), i))
            return sorted(ranked[:max(1, math.ceil(self.cfg.keep * len(ranked)))])
        return [i for i in sorted(racing) if self.goes_on(racing[i], cut, cut_examples)]

    def goes_on(self, p: Partial, cut: float, cut_examples: np.ndarray | None = None) -> bool:
        """Whether ``p`` can still reach ``cut`` (a whole-set fitness). ``cut_examples``: the cut
        individual's per-row scores (tasks in name order), for the paired comparison."""
        scored = p.scored()
        if self.cfg.rule == "hoeffding":
            return self.optimistic(scored) >= cut
        if cut_examples is not None:
            per_task, start = {}, 0
            for name in sorted(self.totals):
                per_task[name] = cut_examples[start:start + len(scored.get(name, ()))]
                start += self.totals[name]
            cut = self.fitness({name: per_task[name] for name in scored})
        return self.fitness(scored) >= cut - self.cfg.margin
