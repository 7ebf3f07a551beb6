"""What a worker needs to build itself anywhere: paths, layout, tasks and device settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evo_merge.fitness.evaluator import LocalEvaluator
from evo_merge.fitness.tasks import Task
from evo_merge.genome import GenomeLayout
from evo_merge.model_host import ModelHost
from evo_merge.lora_members import lora_basis
from evo_merge.plugins import load_plugins
from evo_merge.pool.worker import Worker


@dataclass
class WorkerSpec:
    """Small and picklable: sent to every Ray actor, which loads the model itself."""

    run_dir: Path
    base_dir: Path
    adapter_dir: Path | None
    layout: GenomeLayout
    tasks: list[tuple[Task, float]]
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    trust_remote_code: bool = False
    heldout: list[tuple[Task, float]] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    member_dirs: dict[str, Path] = field(default_factory=dict)
    max_rank: int | None = None


def make_worker(spec: WorkerSpec, name: str | None = None, host: ModelHost | None = None) -> Worker:
    """A Worker for ``spec``; pass ``host`` to reuse an already loaded model."""
    load_plugins(spec.plugins)
    basis = lora_basis(spec.member_dirs, spec.max_rank) if spec.layout.kind == "lora_exact" else None
    host = host or ModelHost(spec.base_dir, spec.layout, adapter_dir=spec.adapter_dir, device=spec.device,
                             dtype=spec.dtype, trust_remote_code=spec.trust_remote_code, basis=basis)
    return Worker(spec.run_dir, LocalEvaluator(host, spec.tasks, batch_size=spec.batch_size, heldout=spec.heldout),
                  name=name)
