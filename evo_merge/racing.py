"""Racing's rules (``evolution.racing``): what an individual has been scored on so far, and
whether it goes on to the next stage of the fitness rows. Stages are fractions of every
task's fitness rows (default a quarter, a half, all), scored in order: with ``order:
informative`` the rows on which the current population's scores differ most come first
(rows every member scores alike tell offspring apart least), with ``given`` the rows as stored.

- ``survival``: after each stage, the run's own selection is applied to the population and
  the offspring, each offspring's unscored rows counted at the best score a member of the
  population has on them; the offspring it keeps go on (those that could still survive).
  So about as many offspring reach the whole set as would survive, chosen by the rule that
  chooses survivors (niches included).
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
``halving`` and ``survival`` as ``estimate``); ``first_stage`` scores them on the first
stage only and the search result, an individual, on every row; ``full`` on every row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from evo_merge.config import RacingConfig
from evo_merge.fitness.evaluator import Evaluation
from evo_merge.pool.jobs import JobResult


def stage_split(lo: float, hi: float) -> str:
    return "fitness" if (lo, hi) == (0.0, 1.0) else f"fitness[{lo:g}:{hi:g}]"


def rows_split(rows: dict[str, Sequence[int]]) -> str:
    """The split of the named fitness rows of each task, in the order given (the evaluator
    scores them in that order)."""
    return "fitness@" + json.dumps({name: [int(r) for r in rows[name]] for name in sorted(rows)},
                                   separators=(",", ":"))


def informative_order(examples: np.ndarray | None, totals: dict[str, int]) -> dict[str, np.ndarray]:
    """Each task's fitness rows, those whose scores vary most across ``examples`` (individuals
    x rows, tasks in name order) first, ties in row order; the given order without them."""
    order, start = {}, 0
    for name in sorted(totals):
        n = totals[name]
        if examples is None or examples.shape[1] != sum(totals.values()):
            order[name] = np.arange(n)
        else:
            spread = examples[:, start:start + n].var(axis=0)
            order[name] = np.lexsort((np.arange(n), -spread))
        start += n
    return order


@dataclass
class Partial:
    """What one individual or candidate has been scored on so far."""

    first: JobResult
    examples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    seconds: float = 0.0
    stages: int = 0
    positions: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, ev: Evaluation, rows: dict[str, np.ndarray] | None = None) -> None:
        """Add one stage's scores; ``rows``: which fitness rows of each task they are, in the
        order scored (None: the rows right after those scored so far)."""
        for name, scores in ev.example_scores.items():
            scores = np.asarray(scores, dtype=float)
            done = sum(len(x) for x in self.examples.get(name, []))
            at = np.arange(done, done + len(scores)) if rows is None else np.asarray(rows[name], dtype=int)
            self.examples.setdefault(name, []).append(scores)
            self.positions.setdefault(name, []).append(at)
        self.seconds += ev.seconds
        self.stages += 1

    def indices(self) -> dict[str, np.ndarray]:
        """The fitness rows scored so far, per task, in row order."""
        return {name: np.sort(np.concatenate(parts)) for name, parts in self.positions.items()}

    def scored(self) -> dict[str, np.ndarray]:
        """The scores so far, per task, in row order."""
        out = {}
        for name, parts in self.examples.items():
            at = np.concatenate(self.positions[name])
            out[name] = np.concatenate(parts)[np.argsort(at, kind="stable")]
        return out

    def rows(self) -> int:
        return sum(len(part) for parts in self.examples.values() for part in parts)

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
    order: dict[str, np.ndarray] | None = None  # rows per task in the order stages take them (None: given)

    def _bounds(self) -> list[tuple[float, float]]:
        bounds = [0.0, *self.cfg.stages]
        return list(zip(bounds, bounds[1:]))

    def stage_rows(self, k: int) -> dict[str, np.ndarray]:
        """The fitness rows of each task that stage ``k`` scores, in the order scored."""
        lo, hi = self._bounds()[k]
        out = {}
        for name, n in self.totals.items():
            rows = self.order[name] if self.order is not None else np.arange(n)
            out[name] = np.asarray(rows[int(lo * n):int(hi * n)], dtype=int)
        return out

    def splits(self) -> list[str]:
        if self.order is None:
            return [stage_split(lo, hi) for lo, hi in self._bounds()]
        return [rows_split(self.stage_rows(k)) for k in range(len(self.cfg.stages))]

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

    def per_task(self, examples: np.ndarray) -> dict[str, np.ndarray]:
        """Whole-set per-row scores (tasks in name order, as the lineage keeps them) by task."""
        out, start = {}, 0
        for name in sorted(self.totals):
            out[name] = np.asarray(examples[start:start + self.totals[name]], dtype=float)
            start += self.totals[name]
        return out

    def estimated(self, p: Partial, prior: np.ndarray) -> np.ndarray:
        """Whole-set per-row scores (tasks in name order): the rows scored, the others at
        ``prior`` (for rule survival, the population's best on each row)."""
        rows = self.per_task(prior.copy())
        scored, at = p.scored(), p.indices()
        for name in scored:
            rows[name][at[name]] = scored[name]
        return np.concatenate([rows[name] for name in sorted(rows)])

    def next_stage(self, racing: dict[int, Partial], cut: float, cut_examples: np.ndarray | None) -> list[int]:
        """Which of ``racing`` (offspring by index) go on to the next stage, in index order
        (rules halving, estimate, hoeffding; survival is decided by the engine's selection)."""
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
            theirs, at = self.per_task(cut_examples), p.indices()
            cut = self.fitness({name: theirs[name][at[name]] for name in scored})
        return self.fitness(scored) >= cut - self.cfg.margin
