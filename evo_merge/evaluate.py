"""``evo-merge eval``: score any model, adapter or run individual on task specs, with a few
predictions next to the answers, to debug a task before a run.

A target is a Hugging Face model directory (or Hub id), a PEFT adapter directory (its base
from ``adapter_config.json`` or ``base``), or ``RUN_DIR[:ID]`` (an individual of a run; the
run's evolved best without an id). Weights are read from safetensors only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.fitness.checks import row_view
from evo_merge.fitness.cpu_linear import onednn_linears
from evo_merge.fitness.heap import keep_freed_memory
from evo_merge.fitness.lm_eval_task import TASK_ID
from evo_merge.fitness.metrics import make_metric
from evo_merge.fitness.tasks import load_task


@dataclass
class TaskScore:
    task: str
    split: str
    rows: int
    score: float
    samples: list[tuple[str, str, str, bool]] = field(default_factory=list)  # prompt, prediction, answer, right
    by_task: dict[str, tuple[float, int]] = field(default_factory=dict)  # an lm-eval group's: score, rows per task


def split_target(target: str) -> tuple[Path, int | None]:
    """``RUN_DIR:ID`` -> (RUN_DIR, ID); anything else -> (path, None)."""
    head, sep, tail = target.rpartition(":")
    if sep and tail.isdigit() and (Path(head) / "lineage.sqlite").is_file():
        return Path(head), int(tail)
    return Path(target), None


def load_target(target: str, device: str = "auto", dtype: str = "auto", base: str | None = None,
                trust_remote_code: bool = False) -> tuple[Any, Any, str]:
    """(model, tokenizer, what it is) for a target, on ``device``."""
    path, ind_id = split_target(target)
    if (path / "lineage.sqlite").is_file():
        return _run_individual(path, ind_id, device, dtype)
    from evo_merge.model_host import load_tokenizer, resolve_device, resolve_dtype
    from evo_merge.population import resolve_model_path

    local = resolve_model_path(str(path), Path.cwd(), "model", None)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    adapter = (local / "adapter_config.json").is_file()
    if adapter:
        from evo_merge.lora_members import adapter_config

        base_ref = base or adapter_config(local).get("base_model_name_or_path")
        if not base_ref:
            raise EvoMergeError(f"{local}: the adapter names no base model; pass --base")
        try:
            base_dir = resolve_model_path(str(base_ref), Path.cwd(), "base model", None)
        except EvoMergeError as exc:
            raise EvoMergeError(f"{exc} (the base named in {local / 'adapter_config.json'}; pass --base)") from None
    else:
        base_dir = local
    model = _load_model(base_dir, torch_dtype, trust_remote_code)
    if adapter:
        from evo_merge.lora_members import peft_model

        model = peft_model(model, local)
    what = f"PEFT adapter {local} on {base_dir}" if adapter else f"model {local}"
    return model.to(dev).eval(), load_tokenizer(base_dir, trust_remote_code), what


def _load_model(path: Path, dtype: torch.dtype, trust_remote_code: bool):
    import warnings

    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                                    trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise EvoMergeError(f"cannot load model {path}: {str(exc).splitlines()[0][:200]}") from None


def _run_individual(run_dir: Path, ind_id: int | None, device: str, dtype: str):
    from evo_merge.export import choose_individual, run_population
    from evo_merge.model_host import ModelHost
    from evo_merge.store import RunStore

    with RunStore.open(run_dir) as store:
        ind, chosen = choose_individual(store, ind_id)
        genome = store.weights.load(ind.weights)
        population, cfg = run_population(store)
    adapter = next(iter(population.member_dirs.values())) if population.spec.kind == "lora" else None
    host = ModelHost(population.base_dir, genome.layout, adapter_dir=adapter, device=device, dtype=dtype,
                     trust_remote_code=bool(cfg.get("trust_remote_code")), basis=genome.basis)
    host.install(genome)
    return host.model, host.tokenizer, f"individual {ind.id} of {run_dir} ({chosen})"


def evaluate(model, tokenizer, spec_paths: list[Path], splits: list[str], batch_size: int = 64,
             show: int = 5) -> list[TaskScore]:
    """Score ``model`` on each task's splits; keep the first ``show`` predictions of each."""
    device = next(model.parameters()).device
    if device.type == "cpu":
        keep_freed_memory()
    out = []
    for spec_path in spec_paths:
        task = load_task(spec_path)
        for split in splits:
            rows = task.examples(split)
            if not rows:
                continue
            metric = make_metric(task.spec, rows, tokenizer, device, batch_size)
            with torch.no_grad(), onednn_linears(model, device):
                predictions = metric.predict(model)
            scores = metric.score(predictions)
            samples = [(*row_view(task, row, p), s > 0) for row, p, s in list(zip(rows, predictions, scores))[:show]]
            out.append(TaskScore(task.name, split, len(rows), float(scores.mean()), samples, _by_task(rows, scores)))
    return out


def _by_task(rows: list[dict[str, Any]], scores: np.ndarray) -> dict[str, tuple[float, int]]:
    """For the rows of an lm-eval group: each task's mean score and row count."""
    names = [row.get(TASK_ID) for row in rows]
    return {name: (float(scores[[n == name for n in names]].mean()), names.count(name))
            for name in sorted(set(names) - {None})}
