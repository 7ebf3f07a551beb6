"""In-process executor: one Worker in this process runs the jobs one after another."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Callable, Sequence

from evo_merge.fitness.evaluator import Evaluation
from evo_merge.pool.jobs import Job, JobResult
from evo_merge.pool.worker import Worker


class LocalExecutor:
    capacity = 1

    def __init__(self, worker: Worker, multi_lora: int = 0):
        self.worker, self.multi_lora = worker, multi_lora
        self._queue: deque[tuple[int, Job]] = deque()
        self._next_ticket = 0

    def submit(self, job: Job) -> int:
        """Queue a job for ``next_done`` (steady-state mode with one worker)."""
        self._queue.append((self._next_ticket, job))
        self._next_ticket += 1
        return self._next_ticket - 1

    def next_done(self) -> tuple[int, JobResult]:
        ticket, job = self._queue.popleft()
        return ticket, self.worker.run(job)

    def run(self, jobs: Sequence[Job], on_done: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        if self.multi_lora > 1:
            results = []
            for start in range(0, len(jobs), self.multi_lora):
                for res in self.worker.run_many(jobs[start:start + self.multi_lora], self.multi_lora):
                    results.append(res)
                    if on_done:
                        on_done(res)
            return results
        results = []
        for job in jobs:
            results.append(self.worker.run(job))
            if on_done:
                on_done(results[-1])
        return results

    def attach_run_dir(self, run_dir: Path) -> list[str]:
        """Point the worker at a (new) run directory."""
        self.worker.use_run_dir(run_dir)
        return [self.worker.node]

    def ensemble(self, weights: Sequence[str], split: str) -> Evaluation:
        return self.worker.ensemble(weights, split)

    def close(self) -> None:
        self.worker.cache.clear()
