"""The evaluation interface and its in-process implementation.

Fitness is the weighted mean of task scores on each task's fitness split. The test
split is only ever read through ``split="test"``, which the engine uses for reporting,
never for selection. Held-out tasks (``split="heldout"``: their test examples) are tasks
no fitness ever used, scored only in the report.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from evo_merge.fitness.cpu_linear import onednn_linears
from evo_merge.fitness.metrics import Metric, NegativeLoss, make_metric
from evo_merge.fitness.tasks import Task
from evo_merge.genome import Genome
from evo_merge.model_host import ModelHost

SPLITS = ("fitness", "test", "heldout")
SLICE = re.compile(r"fitness\[([0-9.]+):([0-9.]+)\]")
ROWS = "fitness@"   # + {"task": [row, ...]}: the named fitness rows, in that order (racing's informative order)
KEPT_ROW_SPLITS = 8  # row splits change every generation: the latest ones are kept


def whole_split(split: str) -> str:
    """The split a part of one names: ``fitness`` for ``fitness[lo:hi]`` and ``fitness@{...}``."""
    return "fitness" if split.startswith(("fitness[", ROWS)) else split


@dataclass
class Evaluation:
    """Scores of one model (or ensemble) on one split."""

    score: float
    task_scores: dict[str, float]
    example_scores: dict[str, np.ndarray] = field(repr=False)
    predictions: dict[str, list[Any]] = field(repr=False)
    seconds: float = 0.0
    loss: float | None = None  # weighted mean per-token loss of the reference answers, when asked


class Evaluator(Protocol):
    """What the engine needs from whoever scores genomes (in process, or a Ray pool)."""

    def evaluate(self, genome: Genome, split: str = "fitness", loss: bool = False) -> Evaluation: ...

    def ensemble(self, evaluations: Sequence[Evaluation], split: str = "fitness") -> Evaluation: ...


def _normalised(tasks: Sequence[tuple[Task, float]]) -> dict[str, float]:
    total = sum(w for _, w in tasks)
    return {t.name: w / total for t, w in tasks} if total > 0 else {}


class LocalEvaluator:
    """Scores genomes on a ModelHost in this process."""

    def __init__(self, host: ModelHost, tasks: Sequence[tuple[Task, float]], batch_size: int = 64,
                 heldout: Sequence[tuple[Task, float]] = ()):
        self.host = host
        self.tasks, self.batch_size = list(tasks), batch_size
        self._loss_metrics: dict[str, dict[str, NegativeLoss]] = {}
        self.split_weights = {"fitness": _normalised(tasks), "test": _normalised(tasks),
                              "heldout": _normalised(heldout)}
        self.weights = self.split_weights["fitness"]
        sources = {"fitness": [(t, t.examples("fitness")) for t, _ in tasks],
                   "test": [(t, t.examples("test")) for t, _ in tasks],
                   "heldout": [(t, t.examples("test")) for t, _ in heldout]}
        self.metrics: dict[str, dict[str, Metric]] = {
            split: {t.name: make_metric(t.spec, rows, host.tokenizer, host.device, batch_size)
                    for t, rows in pairs if rows}
            for split, pairs in sources.items()
        }

    def _split(self, split: str) -> dict[str, Metric]:
        """The metrics of a split; ``fitness[lo:hi]`` is the part of each task's fitness rows from
        fraction lo to hi, ``fitness@{"task": [rows]}`` the named rows (racing scores offspring a
        part at a time)."""
        if split not in self.metrics:
            picked = self._rows_of(split)
            self.metrics[split] = {
                t.name: make_metric(t.spec, rows, self.host.tokenizer, self.host.device, self.batch_size)
                for t, _ in self.tasks if (rows := picked(t.name, t.examples("fitness")))}
            self.split_weights[split] = self.split_weights["fitness"]
            row_splits = [s for s in self.metrics if s.startswith(ROWS)]
            for old in row_splits[:-KEPT_ROW_SPLITS]:
                del self.metrics[old], self.split_weights[old]
        return self.metrics[split]

    @staticmethod
    def _rows_of(split: str):
        """(task name, its fitness rows) -> the rows a part-of-fitness split names."""
        if split.startswith(ROWS):
            named = json.loads(split[len(ROWS):])
            return lambda name, rows: [rows[i] for i in named.get(name, ())]
        m = SLICE.fullmatch(split)
        if m is None:
            raise ValueError(f"unknown split {split!r}")
        lo, hi = float(m.group(1)), float(m.group(2))
        return lambda name, rows: rows[int(lo * len(rows)):int(hi * len(rows))]

    def _kernels(self):
        """Scoring on a CPU runs float32 linear layers on oneDNN where that pays (``cpu_linear.py``)."""
        return onednn_linears(self.host.model, self.host.device)

    def evaluate(self, genome: Genome, split: str = "fitness", loss: bool = False) -> Evaluation:
        start = time.perf_counter()
        self.host.install(genome)
        with self._kernels():
            preds = {name: m.predict(self.host.model) for name, m in self._split(split).items()}
        ev = self._from_predictions(preds, split)
        if loss:
            ev.loss = self._loss(split)
        ev.seconds = time.perf_counter() - start
        return ev

    def evaluate_many(self, genomes: Sequence[Genome], split: str = "fitness", slots: int = 8,
                      max_rows: int = 512) -> list[Evaluation]:
        """Score several LoRA genomes, batching continuation-scored tasks over ``slots`` adapters
        in one forward (see ``multi_lora.py``); other tasks and populations: one pass each."""
        from evo_merge.fitness.multi_lora import MultiLoraSlots, batchable, predict_many

        metrics = self._split(split)
        if self.host.layout.kind not in ("lora", "lora_exact") or len(genomes) < 2 or not all(map(batchable, metrics.values())):
            return [self.evaluate(g, split) for g in genomes]
        start = time.perf_counter()
        if getattr(self, "_slots", None) is None or len(self._slots.names) < slots:
            self._slots = MultiLoraSlots(self.host, slots)
        with self._kernels():
            preds = {name: predict_many(self._slots, m, genomes, max_rows) for name, m in metrics.items()}
        seconds = (time.perf_counter() - start) / len(genomes)
        out = []
        for i in range(len(genomes)):
            ev = self._from_predictions({name: p[i] for name, p in preds.items()}, split)
            ev.seconds = seconds
            out.append(ev)
        return out

    def _loss(self, split: str) -> float:
        """Weighted mean over tasks of the per-token loss of each example's reference answer."""
        if split not in self._loss_metrics:
            self._loss_metrics[split] = {
                t.name: NegativeLoss(t.spec, t.examples(split), self.host.tokenizer, self.host.device,
                                     self.batch_size) for t, _ in self.tasks if t.examples(split)}
        with self._kernels():
            per_task = {name: -float(np.mean(m.predict(self.host.model)))
                        for name, m in self._loss_metrics[split].items()}
        return float(sum(self.weights[n] * v for n, v in per_task.items()))

    def ensemble(self, evaluations: Sequence[Evaluation], split: str = "fitness") -> Evaluation:
        """Combine members' predictions per task (vote or mean log-prob) and score the result."""
        preds = {name: m.combine([e.predictions[name] for e in evaluations])
                 for name, m in self.metrics[split].items()}
        return self._from_predictions(preds, split)

    def _from_predictions(self, preds: dict[str, list[Any]], split: str) -> Evaluation:
        examples = {name: self.metrics[split][name].score(p) for name, p in preds.items()}
        task_scores = {name: float(s.mean()) for name, s in examples.items()}
        weights = self.split_weights[split]
        score = float(sum(weights[n] * s for n, s in task_scores.items()))
        return Evaluation(score, task_scores, examples, preds)
