"""A worker: one model host on one device that builds offspring in place and scores them.

Plain Python, no Ray: the in-process executor, tests and GPU benchmarks use it as it is,
and the Ray pool wraps it in an actor.
"""

from __future__ import annotations

import os
import socket
import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

from evo_merge.errors import EvoMergeError
from evo_merge.fitness.evaluator import Evaluation, LocalEvaluator
from evo_merge.genome import Genome
from evo_merge.operators.base import build
from evo_merge.pool.jobs import Job, JobResult, RebuildEntry
from evo_merge.store.weights import WeightStore

RUN_TOKEN_FILE = ".evo-merge-token"


class GenomeCache:
    """Least-recently-used genomes on the worker's device, bounded in bytes."""

    def __init__(self, weights: WeightStore, device, max_bytes: int):
        self.weights, self.device, self.max_bytes = weights, device, max_bytes
        self._items: OrderedDict[str, Genome] = OrderedDict()
        self._bytes = 0

    def get(self, digest: str) -> Genome:
        if digest in self._items:
            self._items.move_to_end(digest)
            return self._items[digest]
        return self.put(digest, self.weights.load(digest, device=self.device))

    def has(self, digest: str) -> bool:
        return digest in self._items

    def put(self, digest: str, genome: Genome) -> Genome:
        if digest not in self._items:
            self._items[digest] = genome
            self._bytes += genome.nbytes()
        while len(self._items) > 1 and self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes()
        return genome

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


class Worker:
    """Builds and scores individuals; reads and writes weights in the run's weight store."""

    def __init__(self, run_dir: Path, evaluator: LocalEvaluator, name: str | None = None,
                 cache_bytes: int = 2 << 30):
        self.run_dir = Path(run_dir)
        self.weights = WeightStore(self.run_dir / "weights")
        self.evaluator = evaluator
        self.cache = GenomeCache(self.weights, evaluator.host.device, cache_bytes)
        self.node = socket.gethostname()
        self.name = name or f"worker:{self.node}:{os.getpid()}"

    def use_run_dir(self, run_dir: Path) -> None:
        """Work in another run directory from now on (a pool reused across runs)."""
        if Path(run_dir) != self.run_dir:
            self.run_dir = Path(run_dir)
            self.weights = WeightStore(self.run_dir / "weights")
            self.cache = GenomeCache(self.weights, self.cache.device, self.cache.max_bytes)

    def check_run_dir(self, token: str, run_dir: Path | None = None) -> str:
        """Raise unless this worker sees the driver's run directory (shared storage)."""
        if run_dir is not None:
            self.use_run_dir(run_dir)
        path = self.run_dir / RUN_TOKEN_FILE
        seen = path.read_text().strip() if path.is_file() else None
        if seen != token:
            raise EvoMergeError(f"run directory {self.run_dir} is not visible from node {self.node}: "
                                "put the run directory on storage shared by every node")
        return self.node

    def _ready(self, digest: str, rebuild: dict[str, RebuildEntry]) -> bool:
        return self.cache.has(digest) or digest not in rebuild or self.weights.has(digest)

    def fetch(self, digest: str, rebuild: dict[str, RebuildEntry]) -> Genome:
        """A genome by hash: from the cache, the weight store, or rebuilt from the recipe the job
        gives for it (checked against the hash). Rebuilding is deterministic on one device, so a
        worker that did not build an unwritten individual makes the same bits. Missing ancestors
        are built oldest first (an explicit stack, not recursion: a lineage can be thousands deep)."""
        if self._ready(digest, rebuild):
            return self.cache.get(digest)
        order, seen, stack = [], set(), [(digest, False)]
        while stack:
            d, expanded = stack.pop()
            if expanded:
                order.append(d)
            elif d not in seen and not self._ready(d, rebuild):
                seen.add(d)
                stack.append((d, True))
                entry = rebuild[d]
                stack.extend((x, False) for x in (*entry.inputs.values(), *entry.velocities.values()))
        made = None
        for d in order:
            if not self._ready(d, rebuild):
                genome = self._rebuild(d, rebuild)
                made = genome if d == digest else made
        return made if made is not None else self.cache.get(digest)  # (a genome larger than the cache)

    def _rebuild(self, digest: str, rebuild: dict[str, RebuildEntry]) -> Genome:
        """One individual from its recipe (its parents fetched), put in the cache."""
        entry = rebuild[digest]
        built = build(entry.recipe, lambda i: self.fetch(entry.inputs[i], rebuild),
                      lambda i: self.fetch(entry.velocities[i], rebuild) if i in entry.velocities else None)
        made = {entry.weights: built.genome, entry.velocity: built.velocity}
        for want, genome in made.items():
            if want is None:
                continue
            if genome is None or self.weights.digest(genome) != want:
                raise EvoMergeError(f"{entry.recipe.operator} individual {want[:12]} does not rebuild to its "
                                    f"recorded hash on {self.evaluator.host.device}")
            self.cache.put(want, genome)
        return made[digest]  # type: ignore[return-value]

    def run(self, job: Job) -> JobResult:
        if job.ensemble is not None:
            return self._ensemble(job)
        if not job.score:
            return self._store(job)
        built = self._build(job)
        evaluation = self.evaluator.evaluate(built[0], job.split, loss=job.loss)
        return self._result(built, evaluation, job)

    def run_many(self, jobs: Sequence[Job], slots: int) -> list[JobResult]:
        """Build every job's individual, then score them together (batched multi-LoRA where the
        evaluator can); the same results as ``run`` one by one."""
        if slots < 2 or len(jobs) < 2 or any(not jobs[0].batches_with(j) for j in jobs):
            return [self.run(j) for j in jobs]
        built = [self._build(j) for j in jobs]
        evaluations = self.evaluator.evaluate_many([b[0] for b in built], jobs[0].split, slots=slots)
        return [self._result(b, ev, j) for b, ev, j in zip(built, evaluations, jobs)]

    def _result(self, built: tuple, evaluation: Evaluation, job: Job) -> JobResult:
        _, digest, velocity_hash, build_seconds = built
        if not job.predictions:
            evaluation.predictions = {}  # they stay here: only scores travel back
        return JobResult(digest, velocity_hash, evaluation, build_seconds, self.name, self.node)

    def _ensemble(self, job: Job) -> JobResult:
        """The output ensemble of stored individuals: members' predictions combined per task."""
        start = time.perf_counter()
        evaluations = [self.evaluator.evaluate(self.fetch(d, job.rebuild), job.split) for d in job.ensemble or []]
        evaluation = self.evaluator.ensemble(evaluations, job.split)
        evaluation.seconds = time.perf_counter() - start
        if not job.predictions:
            evaluation.predictions = {}
        return JobResult("", None, evaluation, 0.0, self.name, self.node)

    def _build(self, job: Job) -> tuple[Genome, str, str | None, float]:
        """The job's individual (built from its recipe, or read): genome, hash, velocity hash, seconds."""
        start = time.perf_counter()
        velocity_hash = None
        if job.recipe is not None:
            fetch = lambda i: self.fetch(job.inputs[i], job.rebuild)  # noqa: E731
            fetch_velocity = lambda i: self.fetch(job.velocities[i], job.rebuild) if i in job.velocities else None  # noqa: E731
            built = build(job.recipe, fetch, fetch_velocity)
            genome, digest = built.genome, ""
            if job.persist:  # always hashed; written only when asked (the engine writes survivors later)
                digest = self._keep(built.genome, job.write)
                if built.velocity is not None:
                    velocity_hash = self._keep(built.velocity, job.write)
        else:
            digest = job.weights
            genome = self.fetch(digest, job.rebuild)
            if job.store_weights and not self.weights.has(digest):
                self.weights.save(genome, digest)
        return genome, digest, velocity_hash, time.perf_counter() - start

    def _keep(self, genome: Genome, write: bool) -> str:
        """Hash a built genome, keep it in the cache, and write it if asked."""
        digest = self.weights.save(genome) if write else self.weights.digest(genome)
        self.cache.put(digest, genome)
        return digest

    def _store(self, job: Job) -> JobResult:
        """Make sure ``job.weights`` (and nothing else) is in the weight store: a checkpoint's
        survivor, taken from the cache or rebuilt from its recipe."""
        start = time.perf_counter()
        if not self.weights.has(job.weights):
            self.weights.save(self.fetch(job.weights, job.rebuild), job.weights)
        empty = Evaluation(0.0, {}, {}, {})
        return JobResult(job.weights, None, empty, time.perf_counter() - start, self.name, self.node)

    def pid(self) -> int:
        return os.getpid()
