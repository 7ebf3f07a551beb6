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
from evo_merge.merge.sparsify import inputs_are_scratch, tie_order
from evo_merge.mergeyaml.plan import MergePlan, TensorTask
from evo_merge.mergeyaml.tensor_files import ShardedWriter, TensorReader


class ReadBuffers:
    """One reusable host buffer per input slot (and the base), each the size of the plan's largest
    input: reading into memory that is already mapped costs no page faults."""

    def __init__(self, plan: MergePlan, readers: dict[str, TensorReader]):
        sizes = [readers[m].infos[n].nbytes for t in plan.tasks for m, n in t.inputs + ([t.base] if t.base else [])]
        self.size = max(sizes, default=0)
        self.slots: dict[int, torch.Tensor] = {}

    def __call__(self, slot: int) -> torch.Tensor:
        if slot not in self.slots:
            self.slots[slot] = torch.empty(self.size, dtype=torch.uint8)
        return self.slots[slot]


def merge_tensor(method: MergeMethod, task: TensorTask, readers: dict[str, TensorReader], device: str,
                 generator: torch.Generator | None, buffers: ReadBuffers | None = None) -> torch.Tensor:
    """The output tensor of one task (inputs read into ``buffers``, which it may overwrite)."""
    def read(slot: int, model: str, name: str) -> torch.Tensor:
        return readers[model].read(name, device, into=buffers(slot) if buffers else None)

    if task.copy:
        return read(0, *task.inputs[0]).to(task.dtype)
    xs = [read(i, m, n).float() for i, (m, n) in enumerate(task.inputs)]
    base = read(len(xs), *task.base).float() if task.base else None
    weights = torch.tensor(task.weights, dtype=torch.float32, device=xs[0].device)
    with inputs_are_scratch():  # xs are this merge's own buffers
        if method.space == "delta":
            for x in xs:
                x.sub_(base)
            out = method(xs, weights, generator=generator, **task.params).float().add_(base)
        else:
            out = method(xs, weights, generator=generator, base=base, **task.params)
    return out.to(task.dtype)


def run_plan(method: MergeMethod, plan: MergePlan, readers: dict[str, TensorReader], writer: ShardedWriter,
             device: str, seed: int, progress=None, ties: str = "index") -> None:
    generator = None
    if method.uses_random:
        generator = torch.Generator(device=device).manual_seed(seed)
    buffers = ReadBuffers(plan, readers)
    try:
        with tie_order(ties):
            for i, task in enumerate(plan.tasks):
                writer.write(task.name, merge_tensor(method, task, readers, device, generator, buffers))
                if progress:
                    progress(i + 1, len(plan.tasks))
        writer.finish()
    finally:
        writer.close()
