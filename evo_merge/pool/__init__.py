"""Executors: where offspring are built and scored (this process now; Ray workers later)."""

from evo_merge.pool.jobs import Executor, Job, JobResult
from evo_merge.pool.local import LocalExecutor

__all__ = ["Executor", "Job", "JobResult", "LocalExecutor"]
