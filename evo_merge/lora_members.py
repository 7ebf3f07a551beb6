"""LoRA members as genomes: both factors (``factors`` / ``product`` modes: every member of one
rank) or their B factors over the members' shared basis (``exact`` mode: ranks may differ)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.merge.lora_exact import LoraBasis, adapter_scale
from evo_merge.weights_io import load_safetensors_dir

UNSUPPORTED = ("use_dora", "rank_pattern", "alpha_pattern")


def adapter_config(path: Path) -> dict:
    cfg_path = Path(path) / "adapter_config.json"
    if not cfg_path.is_file():
        raise EvoMergeError(f"not a PEFT adapter directory (no adapter_config.json): {path}")
    try:
        return json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise EvoMergeError(f"{cfg_path}: malformed JSON at line {exc.lineno}") from None


def _check_config(name: str, cfg: dict, ref: dict | None, exact: bool) -> dict:
    for key in UNSUPPORTED:
        if cfg.get(key):
            raise EvoMergeError(f"member {name}: adapter config sets {key}, which evo-merge does not support")
    keys = ("target_modules",) if exact else ("r", "lora_alpha", "target_modules")
    shape = {k: cfg.get(k) for k in keys}
    if isinstance(shape["target_modules"], list):
        shape["target_modules"] = sorted(shape["target_modules"])
    if ref is not None and shape != ref:
        raise EvoMergeError(f"member {name}: adapter config {shape} differs from the first member's {ref}")
    return shape


def load_lora_members(member_dirs: Mapping[str, Path], mode: str = "exact",
                      max_rank: int | None = None) -> dict[str, Genome]:
    """Each member adapter as a genome of ``mode``'s kind (``lora_exact`` or ``lora``)."""
    exact = mode == "exact"
    ref, loaded = None, {}
    for name, path in member_dirs.items():
        cfg = adapter_config(path)
        ref = _check_config(name, cfg, ref, exact)
        loaded[name] = (load_safetensors_dir(path, prefix="adapter_model"), adapter_scale(cfg))
    if not exact:
        genomes = {n: Genome.from_tensors(t, "lora", what=f"member {n}") for n, (t, _) in loaded.items()}
    else:
        basis = LoraBasis.from_members(loaded, max_rank)
        genomes = {n: Genome.from_tensors(basis.member_tensors(n, t), "lora_exact", what=f"member {n}", basis=basis)
                   for n, (t, _) in loaded.items()}
    first_name, first = next(iter(genomes.items()))
    for name, g in genomes.items():
        g.layout.check_same(first.layout, what=f"member {name} (against {first_name})")
    return genomes


def peft_model(model, adapter_dir: Path, config_update: dict | None = None, load_weights: bool = True):
    """``model`` wrapped in the PEFT LoRA of ``adapter_dir``, its weights read from the safetensors
    files this project resolves itself (PeftModel.from_pretrained would fall back to a pickle
    ``adapter_model.bin`` when the safetensors file has another name, e.g. a shard)."""
    import warnings

    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    adapter_config(adapter_dir)  # one-line errors for a missing or malformed config
    config = LoraConfig.from_pretrained(str(adapter_dir))
    config.inference_mode = True
    for key, value in (config_update or {}).items():
        setattr(config, key, value)
    tensors = load_safetensors_dir(adapter_dir, prefix="adapter_model") if load_weights else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = get_peft_model(model, config)
        if tensors is not None:
            result = set_peft_model_state_dict(wrapped, tensors)
            missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
            if missing:
                raise EvoMergeError(f"{adapter_dir}: adapter tensor {missing[0]} fits no module of the base model")
    return wrapped


def lora_basis(member_dirs: Mapping[str, Path], max_rank: int | None = None) -> LoraBasis:
    """The exact-mode basis of a population's members (the same one ``load_lora_members`` uses)."""
    loaded = {n: (load_safetensors_dir(p, prefix="adapter_model"), adapter_scale(adapter_config(p)))
              for n, p in member_dirs.items()}
    return LoraBasis.from_members(loaded, max_rank)
