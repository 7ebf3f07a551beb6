"""A one-shot merge whose models are PEFT LoRA adapters of the base: merged as genomes.

The adapters are loaded as evo-merge genomes (``lora_mode``: ``exact`` by default, the
updates B A merged exactly; ``factors``; ``product``), merged with the method, and the
result is written as a full model (the merged update added to the base). Only ``models``
with scalar parameters are accepted here: slices, gradients and filters apply to full models.
"""

from __future__ import annotations

from pathlib import Path

from evo_merge.errors import EvoMergeError
from evo_merge.merge.registry import MergeMethod
from evo_merge.mergeyaml.schema import Condition, MergeYaml


def _scalars(settings: dict | None, where: str) -> dict:
    for key, value in (settings or {}).items():
        if isinstance(value, (list, Condition)):
            raise EvoMergeError(f"{where}: parameter {key!r}: gradients and filters apply to full models, "
                                "not LoRA adapters")
    return dict(settings or {})


def merge_adapters(cfg: MergeYaml, method: MergeMethod, paths: dict[str, Path], adapters: set[str],
                   out: Path) -> None:
    from evo_merge.genome import Genome
    from evo_merge.merge import merge_genomes
    from evo_merge.model_host import ModelHost
    from evo_merge.population import MemberSpec, Population, PopulationSpec

    if cfg.slices is not None or not cfg.base_model:
        raise EvoMergeError("LoRA adapters as models need 'models' (not 'slices') and a base_model")
    models = [m for m in cfg.models or [] if m.model != cfg.base_model]
    if cfg.base_model in adapters or {m.model for m in models} != adapters:
        raise EvoMergeError("models mix LoRA adapters and full models; merge one kind at a time")
    params = _scalars(cfg.parameters, "parameters")
    per_model = [_scalars(m.parameters, f"model {m.model}") for m in models]
    for m, p in zip(models, per_model):
        extra = set(p) - {"weight"}
        if extra:
            raise EvoMergeError(f"model {m.model}: with LoRA adapters only 'weight' is a per-model parameter, "
                                f"got {sorted(extra)}")
    method.resolve_params(params)
    names = {m.model: f"m{i}" for i, m in enumerate(models)}
    spec = PopulationSpec.model_construct(name="merge", kind="lora", base_model=cfg.base_model,
                                          members=[MemberSpec(name=names[m.model], path=str(paths[m.model]))
                                                   for m in models])
    population = Population(spec, paths[cfg.base_model], {names[m.model]: paths[m.model] for m in models})
    genomes: list[Genome] = list(population.load_genomes(cfg.lora_mode).values())
    weights = [float(p.get("weight", 1.0)) for p in per_model]
    merged = merge_genomes(method, genomes, weights, seed=cfg.seed, params=params,
                           lora_mode="factors" if cfg.lora_mode == "exact" else cfg.lora_mode)
    host = ModelHost(population.base_dir, merged.layout, adapter_dir=paths[models[0].model], device="cpu",
                     dtype=cfg.out_dtype or cfg.dtype or "float32", trust_remote_code=cfg.trust_remote_code,
                     basis=merged.basis)
    host.install(merged)
    host.export_model(out)
