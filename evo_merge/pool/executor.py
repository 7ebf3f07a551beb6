"""The executor protocol: the one interface the engine, the searches and the report use.

An executor takes jobs with ``submit`` (returning a ticket) and hands back finished ones
with ``next_done``, in whatever order they finish; ``capacity`` is how many jobs it can
work on at once, ``attach`` points its workers at a run directory (returning the nodes
they run on) and ``close`` releases them. ``run_all`` is the generational pattern on top:
a batch of jobs, results in job order, so a run does not depend on which worker was fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

from evo_merge.pool.jobs import Job, JobResult


class Executor(Protocol):
    @property
    def capacity(self) -> int: ...

    def submit(self, job: Job) -> int: ...

    def next_done(self) -> tuple[int, JobResult]: ...

    def attach(self, run_dir: Path) -> list[str]: ...

    def close(self) -> None: ...


def run_all(executor: Executor, jobs: Sequence[Job],
            on_done: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Every job, spread over the executor's workers; results in job order."""
    tickets = [executor.submit(job) for job in jobs]
    index = {t: i for i, t in enumerate(tickets)}
    results: list[JobResult | None] = [None] * len(jobs)
    for _ in jobs:
        ticket, result = executor.next_done()
        results[index[ticket]] = result
        if on_done:
            on_done(result)
    return results  # type: ignore[return-value]
