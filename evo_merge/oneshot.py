"""``evo-merge merge``: a one-shot merge of given models into a Hugging Face model directory.

The config follows mergekit's YAML::

    merge_method: ties
    base_model: path/or/hub-id
    models:
      - model: path/to/finetune-or-adapter
        parameters: {weight: 0.6}
    parameters: {density: 0.5}
    seed: 0

Models are full fine-tunes (merged as task vectors: model minus base) or PEFT LoRA
adapters (``lora_mode``: exact by default, factor-wise or as products); the result is written
atomically as a full model (adapters merged into the base).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evo_merge.yamlfile import load_model
from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.merge import get_merge_method, merge_genomes
from evo_merge.model_host import ModelHost
from evo_merge.population import MemberSpec, Population, PopulationSpec, resolve_model_path


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    model: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class MergeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    merge_method: str
    base_model: str
    models: list[ModelEntry] = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lora_mode: Literal["exact", "factors", "product"] = "exact"
    trust_remote_code: bool = False


def merge_from_config(config_path: Path, out: Path) -> None:
    cfg: MergeConfig = load_model(MergeConfig, config_path, "merge config")
    method = get_merge_method(cfg.merge_method)
    method.resolve_params(cfg.parameters)
    for entry in cfg.models:
        extra = set(entry.parameters) - {"weight"}
        if extra:
            raise EvoMergeError(f"{config_path}: model {entry.model}: only 'weight' is a per-model parameter, "
                                f"got {sorted(extra)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise EvoMergeError(f"output directory {out} already exists and is not empty")
    here = Path(config_path).resolve().parent
    paths = [resolve_model_path(e.model, here, f"model {e.model}", None) for e in cfg.models]
    adapters = [(p / "adapter_config.json").is_file() for p in paths]
    if any(adapters) and not all(adapters):
        raise EvoMergeError("models mix LoRA adapters and full models; merge one kind at a time")
    kind = "lora" if all(adapters) else "full"
    spec = PopulationSpec.model_construct(name="merge", kind=kind, base_model=cfg.base_model,
                                          members=[MemberSpec(name=f"m{i}", path=str(p)) for i, p in enumerate(paths)])
    population = Population(spec, resolve_model_path(cfg.base_model, here, "base_model", None),
                            {f"m{i}": p for i, p in enumerate(paths)})
    genomes: list[Genome] = list(population.load_genomes(cfg.lora_mode).values())
    weights = [float(e.parameters.get("weight", 1.0)) for e in cfg.models]
    merged = merge_genomes(method, genomes, weights, seed=cfg.seed, params=cfg.parameters,
                           lora_mode="factors" if cfg.lora_mode == "exact" else cfg.lora_mode)
    host = ModelHost(population.base_dir, merged.layout, adapter_dir=paths[0] if kind == "lora" else None,
                     device="cpu", dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code, basis=merged.basis)
    host.install(merged)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        host.export_model(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
