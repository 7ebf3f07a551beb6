"""Executors: where offspring are built and scored (this process, or a pool of Ray actors)."""

from evo_merge.pool.executor import Executor, run_all
from evo_merge.pool.jobs import Job, JobResult
from evo_merge.pool.local import LocalExecutor

__all__ = ["Executor", "Job", "JobResult", "LocalExecutor", "run_all"]
