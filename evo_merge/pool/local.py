"""In-process executor: one Worker in this process runs the jobs one dispatch at a time.

It uses the same scheduling policy as the Ray pool (one slot), so batched multi-LoRA
scoring works the same way in both."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from evo_merge.pool.jobs import Job, JobResult
from evo_merge.pool.scheduler import SlotScheduler
from evo_merge.pool.worker import Worker


class LocalExecutor:
    def __init__(self, worker: Worker, batch: int = 1):
        self.worker = worker
        self.scheduler = SlotScheduler(1, prefetch=1, batch=batch)
        self._ready: deque[tuple[int, JobResult]] = deque()

    @property
    def capacity(self) -> int:
        return self.scheduler.capacity

    def submit(self, job: Job) -> int:
        return self.scheduler.submit(job)

    def next_done(self) -> tuple[int, JobResult]:
        if not self._ready:
            for d in self.scheduler.dispatches():
                jobs = d.jobs
                results = self.worker.run_many(jobs, self.scheduler.batch) if len(jobs) > 1 else \
                    [self.worker.run(jobs[0])]
                self.scheduler.finished(d)
                self._ready.extend(zip((t for t, _ in d.items), results))
        if not self._ready:
            raise RuntimeError("next_done with nothing submitted")
        return self._ready.popleft()

    def attach(self, run_dir: Path) -> list[str]:
        """Point the worker at a (new) run directory."""
        self.worker.use_run_dir(run_dir)
        return [self.worker.node]

    def close(self) -> None:
        self.worker.cache.clear()
