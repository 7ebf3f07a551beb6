"""In-process executor: builds offspring and scores them on this process's model host."""

from __future__ import annotations

import os
import socket
import time
from collections import OrderedDict
from typing import Callable, Sequence

from evo_merge.fitness.evaluator import Evaluation, LocalEvaluator
from evo_merge.genome import Genome
from evo_merge.operators.recipes import build
from evo_merge.pool.jobs import Job, JobResult
from evo_merge.store import RunStore


class GenomeCache:
    """Least-recently-used genomes on the worker's device, bounded in bytes."""

    def __init__(self, store: RunStore, device, max_bytes: int):
        self.store, self.device, self.max_bytes = store, device, max_bytes
        self._items: OrderedDict[str, Genome] = OrderedDict()

    def get(self, digest: str) -> Genome:
        if digest in self._items:
            self._items.move_to_end(digest)
            return self._items[digest]
        return self.put(digest, self.store.weights.load(digest, device=self.device))

    def put(self, digest: str, genome: Genome) -> Genome:
        self._items[digest] = genome
        while len(self._items) > 1 and sum(g.nbytes() for g in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)
        return genome


class LocalExecutor:
    """Executes jobs one after another in this process."""

    def __init__(self, store: RunStore, evaluator: LocalEvaluator, cache_bytes: int = 2 << 30):
        self.store = store
        self.evaluator = evaluator
        self.cache = GenomeCache(store, evaluator.host.device, cache_bytes)
        self.name = f"local:{socket.gethostname()}:{os.getpid()}"

    def _weights_of(self, ind_id: int) -> Genome:
        return self.cache.get(self.store.lineage.get(ind_id).weights)

    def _velocity_of(self, ind_id: int) -> Genome | None:
        digest = self.store.lineage.get(ind_id).velocity
        return self.cache.get(digest) if digest else None

    def run_one(self, job: Job) -> JobResult:
        start = time.perf_counter()
        velocity_hash = None
        if job.recipe is not None:
            built = build(job.recipe, self._weights_of, self._velocity_of)
            digest = self.store.weights.save(built.genome)
            genome = self.cache.put(digest, built.genome)
            if built.velocity is not None:
                velocity_hash = self.store.weights.save(built.velocity)
                self.cache.put(velocity_hash, built.velocity)
        else:
            digest = job.weights
            genome = self.cache.get(digest)
        build_seconds = time.perf_counter() - start
        evaluation = self.evaluator.evaluate(genome, job.split)
        return JobResult(digest, velocity_hash, evaluation, build_seconds, self.name)

    def run(self, jobs: Sequence[Job], on_done: Callable[[JobResult], None] | None = None) -> list[JobResult]:
        results = []
        for job in jobs:
            results.append(self.run_one(job))
            if on_done:
                on_done(results[-1])
        return results

    def ensemble(self, weights: Sequence[str], split: str) -> Evaluation:
        evaluations = [self.evaluator.evaluate(self.cache.get(d), split) for d in weights]
        return self.evaluator.ensemble(evaluations, split)

    def close(self) -> None:
        self.cache._items.clear()
