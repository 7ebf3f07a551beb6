"""``evo-merge merge``: a one-shot merge from mergekit's YAML into a Hugging Face model directory.

The config is mergekit 0.1.5's (see ``mergeyaml/schema.py``) and means what it means in
mergekit (``mergeyaml/plan.py``). Full models are merged tensor by tensor from their
safetensors shards into streamed, sharded output (``mergeyaml/execute.py``). PEFT LoRA
adapters as models are merged as genomes (``lora_mode``: exact by default, factor-wise or
as products) and written as a full model (adapters merged into the base). The output
directory appears atomically: a failure leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evo_merge.atomic_dir import atomic_dir
from evo_merge.errors import EvoMergeError
from evo_merge.merge import get_merge_method
from evo_merge.mergeyaml.schema import MergeYaml
from evo_merge.yamlfile import load_model

DEFAULT_SHARD_BYTES = 5 * 10**9  # mergekit's default shard size


def resolve_ref(ref: str, config_dir: Path) -> Path:
    """A model reference: a directory relative to the current directory (as in mergekit), else
    to the config file's directory, else a Hugging Face Hub id."""
    from evo_merge.population import resolve_model_path

    if "+" in ref:
        raise EvoMergeError(f"model {ref!r}: mergekit's 'model+lora' syntax is not supported; list the "
                            "adapter directory as a model instead")
    here = Path.cwd() if (Path.cwd() / ref).is_dir() else config_dir
    return resolve_model_path(ref, here, f"model {ref}", None)


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EvoMergeError(f"--device {device}: no CUDA device is available")
    if not (device == "cpu" or device.startswith("cuda")):
        raise EvoMergeError(f"--device {device!r}: expected cpu or cuda[:N]")


def merge_from_config(config_path: Path, out: Path, *, device: str = "cpu",
                      shard_bytes: int = DEFAULT_SHARD_BYTES,
                      progress: Callable[[int, int], None] | None = None) -> None:
    cfg: MergeYaml = load_model(MergeYaml, config_path, "merge config")
    method = get_merge_method(cfg.merge_method)
    check_device(device)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EvoMergeError(f"output directory {out} already exists and is not empty")
    here = Path(config_path).resolve().parent
    paths = {ref: resolve_ref(ref, here) for ref in cfg.referenced()}
    adapters = {ref for ref, p in paths.items() if (p / "adapter_config.json").is_file()}
    if adapters:
        from evo_merge.mergeyaml.adapters import merge_adapters

        from evo_merge.merge.sparsify import tie_order

        with tie_order(cfg.tie_order):
            atomic_dir(out, lambda tmp: merge_adapters(cfg, method, paths, adapters, tmp))
        return

    from evo_merge.mergeyaml.execute import run_plan
    from evo_merge.mergeyaml.model_files import write_config, write_tokenizer
    from evo_merge.mergeyaml.plan import Planner, open_readers
    from evo_merge.mergeyaml.tensor_files import ShardedWriter

    readers = open_readers(paths)
    try:
        plan = Planner(cfg, method, readers).plan()

        def build(tmp: Path) -> None:
            writer = ShardedWriter(tmp, [(t.name, t.dtype, t.shape) for t in plan.tasks], shard_bytes)
            run_plan(method, plan, readers, writer, device, cfg.seed, progress, cfg.tie_order)
            write_config(tmp, cfg, plan, paths)
            write_tokenizer(tmp, cfg, paths)

        atomic_dir(out, build)
    finally:
        for r in readers.values():
            r.close()

