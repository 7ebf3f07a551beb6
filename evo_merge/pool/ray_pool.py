"""A pool of Ray actors, each a Worker on its own device, kept busy by a ``ray.wait`` scheduler.

- Jobs carry weight hashes only; workers read parents from, and write children to, the
  run directory (shared storage on a multi-node cluster). Only scores come back.
- Which slot runs what, batching and re-runs are the ``SlotScheduler``'s policy
  (``scheduler.py``); this module is transport only: actors, ``ray.wait`` and errors.
- ``run_all`` returns results in job order whatever worker ran them, so a generational
  run is identical with 1, 2 or 4 workers.
- A worker that dies (ray.kill, its process killed, out of memory) is replaced and its
  jobs re-run; a slot that fails more than ``max_worker_failures`` times stops the run.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from evo_merge.config import PoolConfig
from evo_merge.errors import EvoMergeError
from evo_merge.pool.factory import WorkerSpec, make_worker
from evo_merge.pool.jobs import Job, JobResult
from evo_merge.pool.scheduler import Dispatch, SlotScheduler
from evo_merge.pool.worker import RUN_TOKEN_FILE
from evo_merge.weights_io import atomic_write_text


class WorkerActor:
    """The Ray actor: a Worker built inside the actor's process, named by its Ray node."""

    def __init__(self, spec: WorkerSpec, slot: int, threads: int):
        import ray
        import torch

        torch.set_num_threads(max(1, threads))
        node = ray.get_runtime_context().get_node_id()
        self.worker = make_worker(spec, name=f"ray:{node[:12]}:slot{slot}:pid{os.getpid()}")
        self.worker.node = node

    def run(self, job: Job) -> JobResult:
        return self.worker.run(job)

    def run_many(self, jobs: Sequence[Job], slots: int) -> list[JobResult]:
        return self.worker.run_many(jobs, slots)

    def check_run_dir(self, token: str, run_dir: Path | None = None) -> str:
        return self.worker.check_run_dir(token, run_dir)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class PoolStats:
    """Busy worker-seconds per window: a window runs from the moment jobs are in flight with
    none before to the moment none are left (one generational phase, or a whole steady state)."""

    replaced: int = 0
    windows: list[dict[str, float]] = field(default_factory=list)

    def open(self, workers: int) -> None:
        self.windows.append({"start": time.perf_counter(), "wall": 0.0, "busy": 0.0, "jobs": 0,
                             "workers": workers})

    def job_done(self, busy: float, idle_now: bool, jobs: int = 1) -> None:
        """``busy``: seconds the worker itself spent on the jobs (build + evaluation)."""
        w = self.windows[-1]
        w["busy"] += busy
        w["jobs"] += jobs
        if idle_now:
            w["wall"] = time.perf_counter() - w["start"]

    @property
    def busy(self) -> float:
        return sum(w["busy"] for w in self.windows)


class RayExecutor:
    """Runs jobs on Ray actors, one per slot, as the ``SlotScheduler`` dispatches them."""

    def __init__(self, spec: WorkerSpec, cfg: PoolConfig, batch: int = 1):
        import ray

        self.ray = ray
        self.spec, self.cfg = spec, cfg
        self.started_ray = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats notice on start
            quiet = os.environ.get("EVO_MERGE_DEBUG") != "1"  # Ray's own INFO/WARNING lines only when debugging
            init: dict[str, Any] = {"address": cfg.address, "log_to_driver": False,
                                    "logging_level": logging.ERROR if quiet else logging.INFO,
                                    "runtime_env": cfg.runtime_env}
            if cfg.address is None:  # a local instance sized for the pool
                init.update(num_cpus=max(os.cpu_count() or 1, int(cfg.workers * cfg.cpus_per_worker + 0.999)),
                            include_dashboard=False, _node_ip_address="127.0.0.1")  # not on the network
            try:
                ray.init(**{k: v for k, v in init.items() if v is not None or k == "address"})
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise EvoMergeError(f"cannot start or join Ray (address {cfg.address!r}): "
                                    f"{str(exc).splitlines()[0][:200]}") from None
            self.started_ray = True
        self.pg = self._placement_group()
        self.scheduler = SlotScheduler(cfg.workers, cfg.prefetch, batch, cfg.max_worker_failures)
        self.actors = [self._new_actor(i) for i in range(cfg.workers)]
        self.stats = PoolStats()
        self._inflight: dict[Any, Dispatch] = {}
        self._ready: deque[tuple[int, JobResult]] = deque()

    # -- setup ---------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Jobs that can be in flight at once (workers x prefetch x batch)."""
        return self.scheduler.capacity

    def _bundle(self) -> dict[str, float]:
        bundle = {"CPU": self.cfg.cpus_per_worker, **self.cfg.resources_per_worker}
        if self.cfg.gpus_per_worker:
            bundle["GPU"] = self.cfg.gpus_per_worker
        return bundle

    def _placement_group(self):
        from ray.util.placement_group import placement_group

        pg = placement_group([self._bundle()] * self.cfg.workers, strategy=self.cfg.placement)
        ready, _ = self.ray.wait([pg.ready()], timeout=120)
        if not ready:
            total = self.ray.cluster_resources()
            raise EvoMergeError(f"Ray cannot place {self.cfg.workers} workers of {self._bundle()} "
                                f"({self.cfg.placement}); cluster has {total}")
        return pg

    def _new_actor(self, slot: int):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options = {"num_cpus": self.cfg.cpus_per_worker, "num_gpus": self.cfg.gpus_per_worker,
                   "resources": dict(self.cfg.resources_per_worker), "max_restarts": 0,
                   "scheduling_strategy": PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=slot)}
        cls = self.ray.remote(WorkerActor)
        return cls.options(**options).remote(self.spec, slot, int(self.cfg.cpus_per_worker))

    def attach(self, run_dir: Path) -> list[str]:
        """Write a token into the run directory; every worker must read it back (shared storage)."""
        token = secrets.token_hex(16)
        atomic_write_text(Path(run_dir) / RUN_TOKEN_FILE, token)
        self.spec = replace(self.spec, run_dir=Path(run_dir))  # for workers started later
        return self._get_all([a.check_run_dir.remote(token, Path(run_dir)) for a in self.actors])

    def _get_all(self, refs: list) -> list:
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            raise _unwrap(exc) from None
        except self.ray.exceptions.RayActorError as exc:
            raise EvoMergeError(f"a Ray worker failed to start: {_first_line(exc)}") from None

    # -- scheduling ----------------------------------------------------------------------------
    def submit(self, job: Job) -> int:
        """Queue a job; returns its ticket. Jobs start as soon as a worker has a free credit."""
        ticket = self.scheduler.submit(job)
        self._dispatch()
        return ticket

    def _dispatch(self) -> None:
        if self.scheduler.queued and not self._inflight:
            self.stats.open(len(self.actors))
        for d in self.scheduler.dispatches():
            actor = self.actors[d.slot]
            jobs = d.jobs
            ref = actor.run_many.remote(jobs, self.scheduler.batch) if len(jobs) > 1 else actor.run.remote(jobs[0])
            self._inflight[ref] = d

    def next_done(self) -> tuple[int, JobResult]:
        """Block until some job finishes; returns (ticket, result). Dead workers are replaced."""
        while not self._ready:
            if not self._inflight:
                raise RuntimeError("next_done with nothing submitted")
            done, _ = self.ray.wait(list(self._inflight), num_returns=1)
            d = self._inflight.pop(done[0])
            try:
                result = self.ray.get(done[0])
            except self.ray.exceptions.RayTaskError as exc:
                raise _unwrap(exc) from None
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                    self.ray.exceptions.ObjectLostError) as exc:
                if self.scheduler.failed(d):  # the first news of this death
                    self._replace(d.slot, exc)
                self._dispatch()
                continue
            results = result if isinstance(result, list) else [result]
            self.scheduler.finished(d)
            self._dispatch()
            busy = sum(r.build_seconds + r.evaluation.seconds for r in results)
            self.stats.job_done(busy, idle_now=not self._inflight, jobs=len(results))
            self._ready.extend(zip((t for t, _ in d.items), results))
        return self._ready.popleft()

    def _replace(self, slot: int, exc: BaseException) -> None:
        self.stats.replaced += 1
        if self.scheduler.exhausted(slot):
            raise EvoMergeError(f"Ray worker {slot} failed {self.scheduler.failures[slot]} times "
                                f"(last: {_first_line(exc)}); giving up")
        try:
            self.ray.kill(self.actors[slot])
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.actors[slot] = self._new_actor(slot)

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        try:
            remove_placement_group(self.pg)
        except Exception:  # noqa: BLE001
            pass
        if self.started_ray:
            self.ray.shutdown()


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _first_line(exc: BaseException) -> str:
    text = ANSI.sub("", str(exc)).strip()  # Ray colours its error messages
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _unwrap(exc: Exception) -> Exception:
    """A worker's EvoMergeError comes back as itself; anything else keeps Ray's error."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EvoMergeError):
        return cause
    return exc
