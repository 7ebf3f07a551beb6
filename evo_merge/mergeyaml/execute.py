"""Run a merge plan tensor by tensor, from lazily read shards into streamed output shards.

Peak memory is about one output tensor's inputs (plus the base) in float32, not whole
models. The math runs in float32 on ``device`` (``cuda`` where there is a GPU) and each
result is rounded once to the output dtype. Methods defined on task vectors
(``space="delta"``) see model minus base and the base is added back; methods defined on
weights see the models' weights and, where they take one, the base's.
"""

from __future__ import annotations

import torch

from evo_merge.merge.registry import MergeMethod
from evo_merge.mergeyaml.plan import MergePlan, TensorTask
from evo_merge.mergeyaml.tensor_files import ShardedWriter, TensorReader


def merge_tensor(method: MergeMethod, task: TensorTask, readers: dict[str, TensorReader], device: str,
                 generator: torch.Generator | None) -> torch.Tensor:
    """The output tensor of one task."""
    if task.copy:
        model, name = task.inputs[0]
        return readers[model].read(name, device).to(task.dtype)
    xs = [readers[m].read(n, device).float() for m, n in task.inputs]
    base = readers[task.base[0]].read(task.base[1], device).float() if task.base else None
    weights = torch.tensor(task.weights, dtype=torch.float32, device=xs[0].device)
    if method.space == "delta":
        for x in xs:
            x.sub_(base)
        out = method(xs, weights, generator=generator, **task.params)
        out = out.float().add_(base)
    else:
        out = method(xs, weights, generator=generator, base=base, **task.params)
    return out.to(task.dtype)


def run_plan(method: MergeMethod, plan: MergePlan, readers: dict[str, TensorReader], writer: ShardedWriter,
             device: str, seed: int, progress=None) -> None:
    generator = None
    if method.uses_random:
        generator = torch.Generator(device=device).manual_seed(seed)
    for i, task in enumerate(plan.tasks):
        writer.write(task.name, merge_tensor(method, task, readers, device, generator))
        if progress:
            progress(i + 1, len(plan.tasks))
    writer.finish()
