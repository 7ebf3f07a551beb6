"""What a run writes to its weight store, and when.

Offspring are built and hashed on the workers but not written. The weight store holds:

- the members (written when the run starts, never deleted);
- the closing population of the last committed checkpoint;
- while a generation closes, also the new closing population: its weights are written
  before the checkpoint commits, and the files only the previous checkpoint needed are
  deleted after it has committed (``Persistence.close``), so a crash at any point resumes
  from a checkpoint whose individuals are all on disk;
- the individuals the report scores on the test split and that are not written yet (the
  uniform merge), written when they are scored.

So a run holds at most ``members + 2 x population_size`` model copies (+1 for the report's
uniform merge, written after the last checkpoint's predecessors are gone; in steady-state
mode also the parents of the offspring in flight at a close). Everything else (the offspring
that died in their own generation, velocities, own-bests outside the population) is
recorded with its content hash and rebuilt from its recipe where it is needed again: jobs
carry the recipes of the unwritten individuals they name (``Job.rebuild``), workers take
them from their genome cache or rebuild them and check the hash, and ``replay``/``export``
rebuild them from the lineage.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Iterable

from evo_merge.fitness.evaluator import whole_split
from evo_merge.pool.executor import Executor
from evo_merge.pool.jobs import Job, JobResult, RebuildEntry

SCORING_SPLITS = ("fitness",)  # a job on another split (test, heldout) is the report's: its weights are kept


class Persistence:
    """The engine's side of the weight store: rebuild recipes for jobs, writes at a close, pruning."""

    def __init__(self, engine: Any):
        """``engine``: the ``Engine`` (its state, store, members and executor)."""
        self.engine = engine
        self.weights = engine.store.weights
        self._index: dict[str, int] = {}
        self._indexed: tuple[int, int] = (0, 0)  # (id of the records dict, records indexed)

    # -- which individual has a hash ----------------------------------------------------------
    def _who(self, digest: str) -> int | None:
        records = self.engine.state.records
        if self._indexed[0] != id(records) or self._indexed[1] > len(records):
            self._index, self._indexed = {}, (id(records), 0)
        if self._indexed[1] < len(records):
            for ind in list(records)[self._indexed[1]:]:
                rec = records[ind]
                for h in (rec.weights, rec.velocity):
                    if h and (h not in self._index or records[self._index[h]].recipe is not None
                              and rec.recipe is None):
                        self._index[h] = ind  # the first that has it; a member wins (it is stored)
            self._indexed = (id(records), len(records))
        return self._index.get(digest)

    def stored(self, digest: str) -> bool:
        return self.weights.has(digest)

    def rebuild_map(self, hashes: Iterable[str]) -> dict[str, RebuildEntry]:
        """Recipes for every hash in ``hashes`` (and, recursively, every hash those recipes
        name) that is not in the weight store."""
        state, out = self.engine.state, {}
        todo = [h for h in hashes if h and not self.stored(h)]
        while todo:
            digest = todo.pop()
            if digest in out:
                continue
            ind = self._who(digest)
            if ind is None or state[ind].recipe is None:
                continue  # unknown, or a member: the worker reports the missing file
            rec = state[ind]
            inputs, velocities = state.job_inputs(rec.recipe)
            entry = RebuildEntry(rec.recipe, inputs, velocities, rec.weights, rec.velocity)
            out[rec.weights] = entry
            if rec.velocity and self._who(rec.velocity) == ind:  # only the individual that made it: an
                out[rec.velocity] = entry  # inherited velocity (a mutant's is its parent's) is its maker's
            todo.extend(h for h in (*inputs.values(), *velocities.values()) if h not in out and not self.stored(h))
        return out

    def prepare(self, job: Job) -> Job:
        """Attach the recipes of the unwritten individuals a job reads; a test-split job keeps
        the weights it scores (the report names them)."""
        given = {h: e for h, e in job.rebuild.items() if not self.stored(h)}  # (a racing stage's offspring)
        named = [*job.reads(), *(h for e in given.values() for h in (*e.inputs.values(), *e.velocities.values()))]
        job.rebuild = {**self.rebuild_map(named), **given}
        if job.weights and whole_split(job.split) not in SCORING_SPLITS and not self.stored(job.weights):
            job.store_weights = True
        return job

    def reads(self, job: Job) -> set[str]:
        """Every stored hash a job may read (what must not be deleted while it is in flight)."""
        rebuild = self.rebuild_map(job.reads())
        named = set(job.reads()) | {h for e in rebuild.values() for h in (*e.inputs.values(), *e.velocities.values())}
        return {h for h in named if self.stored(h)}

    # -- a generation's close -----------------------------------------------------------------
    def write(self, population: list[int]) -> None:
        """Write the weights of ``population`` that are not in the store yet (before the checkpoint)."""
        state = self.engine.state
        missing = sorted({state[i].weights for i in population if not self.stored(state[i].weights)})
        if missing:
            self.engine.executor.run_now([Job(weights=h, score=False) for h in missing])

    def keep(self, population: list[int], pinned: Iterable[str] = ()) -> set[str]:
        """The hashes a checkpoint of ``population`` needs on disk."""
        state, engine = self.engine.state, self.engine
        keep = {state[i].weights for i in state.member_ids} | {state[i].weights for i in population} | set(pinned)
        keep |= {g.basis.digest for g in engine.members.values() if getattr(g, "basis", None) is not None}
        return keep

    def prune(self, population: list[int], pinned: Iterable[str] = ()) -> list[str]:
        """Delete what only earlier checkpoints needed (after the new one has committed)."""
        return self.weights.prune(self.keep(population, pinned))


class RebuildingExecutor:
    """The engine's executor: every job gets the recipes of the unwritten individuals it names."""

    def __init__(self, inner: Executor, persistence: Persistence):
        self.inner, self.persistence = inner, persistence
        self._early: deque[tuple[int, JobResult]] = deque()  # results that came in during ``run_now``

    def run_now(self, jobs: list[Job]) -> list[JobResult]:
        """Run ``jobs`` to the end while others may be in flight (steady state): results of
        those others that finish meanwhile are kept for ``next_done``."""
        tickets = {self.submit(job): i for i, job in enumerate(jobs)}
        results: list[JobResult | None] = [None] * len(jobs)
        while any(r is None for r in results):
            ticket, res = self.inner.next_done()
            if ticket in tickets:
                results[tickets[ticket]] = res
            else:
                self._early.append((ticket, res))
        return results  # type: ignore[return-value]

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    def submit(self, job: Job) -> int:
        return self.inner.submit(self.persistence.prepare(job))

    def next_done(self) -> tuple[int, JobResult]:
        return self._early.popleft() if self._early else self.inner.next_done()

    def attach(self, run_dir: Path) -> list[str]:
        return self.inner.attach(run_dir)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str):  # stats, scheduler, actors... of the wrapped executor
        return getattr(self.inner, name)
