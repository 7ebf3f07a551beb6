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


def lora_basis(member_dirs: Mapping[str, Path], max_rank: int | None = None) -> LoraBasis:
    """The exact-mode basis of a population's members (the same one ``load_lora_members`` uses)."""
    loaded = {n: (load_safetensors_dir(p, prefix="adapter_model"), adapter_scale(adapter_config(p)))
              for n, p in member_dirs.items()}
    return LoraBasis.from_members(loaded, max_rank)
