"""A base model loaded once on a device, into which any genome of the population is installed.

The parameters a genome touches are re-bound to views of one contiguous buffer, so
installing a genome is one copy (LoRA) or one copy plus one add (full-weight deltas).
"""

from __future__ import annotations

from pathlib import Path

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.fitness.heap import keep_freed_memory
from evo_merge.genome import Genome, GenomeLayout


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EvoMergeError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvoMergeError(f"device {name!r} asked for, but no CUDA GPU is available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def load_tokenizer(base_dir: Path, trust_remote_code: bool = False):
    """The base model's tokenizer, with a pad token (the EOS token if it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise EvoMergeError(f"cannot load the tokenizer of {base_dir}: {str(exc).splitlines()[0][:200]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _with_adapter(model, adapter_dir: Path, basis):
    """The base wrapped in a PEFT LoRA like the members' (safetensors only); with an exact-LoRA
    ``basis``, of its summed rank and scaling 1 (A and B are set from the basis and genomes)."""
    from evo_merge.lora_members import peft_model

    if basis is None:
        return peft_model(model, adapter_dir)
    return peft_model(model, adapter_dir, {"r": basis.rank, "lora_alpha": basis.rank, "use_rslora": False,
                                           "lora_dropout": 0.0}, load_weights=False)


class ModelHost:
    """Owns the model and tokenizer on one device and installs genomes into it."""

    def __init__(self, base_dir: Path, layout: GenomeLayout, *, adapter_dir: Path | None = None,
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False, basis=None):
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.layout = layout
        self.tokenizer = load_tokenizer(base_dir, trust_remote_code)
        try:
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=self.dtype, use_safetensors=True,
                                                         trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise EvoMergeError(f"cannot load base model {base_dir}: {str(exc).splitlines()[0][:200]}") from None
        if layout.kind == "lora_exact" and basis is None:
            raise EvoMergeError("exact-LoRA genomes need their LoRA basis to build the model (basis=genome.basis)")
        if layout.kind in ("lora", "lora_exact"):
            if adapter_dir is None:
                raise EvoMergeError("a LoRA population needs an adapter directory to build the model")
            model = _with_adapter(model, adapter_dir, basis if layout.kind == "lora_exact" else None)
        self.model = model.to(self.device).eval()
        self.model.requires_grad_(False)
        self._bind(layout)
        self.basis = basis
        if basis is not None:
            self._set_basis(basis)

    def _bind(self, layout: GenomeLayout) -> None:
        """Re-bind each genome-mapped parameter to a view of one work buffer."""
        params = {self._genome_name(n): p for n, p in self.model.named_parameters(remove_duplicate=False)}
        missing = [n for n in layout.names if n not in params]
        if missing:
            raise EvoMergeError(f"genome tensor {missing[0]} has no matching parameter in the model "
                                f"({len(missing)} unmatched): wrong base model for this population?")
        self.work = torch.empty(layout.numel, dtype=self.dtype, device=self.device)
        for name, shape, (a, b) in zip(layout.names, layout.shapes, layout.offsets()):
            p = params[name]
            if tuple(p.shape) != shape:
                raise EvoMergeError(f"genome tensor {name} has shape {list(shape)}, model has {list(p.shape)}")
            view = self.work[a:b].view(shape)
            view.copy_(p.data)
            p.data = view
        self.base_flat = self.work.clone() if layout.kind == "delta" else None

    @torch.no_grad()
    def _set_basis(self, basis) -> None:
        """Exact-LoRA hosts: every module's A is the members' stacked A factors (fixed for the run)."""
        for name, p in self.model.named_parameters():
            genome_name = self._genome_name(name)
            if genome_name.endswith(".lora_A.weight"):
                p.data = basis.a[genome_name[: -len(".lora_A.weight")]].to(self.device, self.dtype).contiguous()

    @staticmethod
    def _genome_name(param_name: str) -> str:
        """Parameter name as stored in checkpoints: PEFT saves adapter keys without '.default'."""
        return param_name.replace(".default.", ".")

    @torch.no_grad()
    def install(self, genome: Genome) -> None:
        """Make the model compute with ``genome``'s weights."""
        if genome.layout != self.layout:
            self.layout.check_same(genome.layout, "genome to install")
        self.work.copy_(genome.flat)
        if self.base_flat is not None:
            self.work.add_(self.base_flat)

    def export_model(self, out_dir: Path, merge_adapter: bool = True, dtype: torch.dtype | None = None) -> None:
        """Save the installed genome as a Hugging Face model directory (LoRA merged into the base),
        cast to ``dtype`` if given (after merging, so the merge runs in the host's precision)."""
        with torch.no_grad():
            for p in self.model.parameters():  # own memory again: shared views confuse checkpoint writers
                p.data = p.data.clone()
        lora = self.layout.kind in ("lora", "lora_exact")
        model = self.model.merge_and_unload() if lora and merge_adapter else self.model
        if dtype is not None and dtype != self.dtype:
            model = model.to(dtype)
        model.save_pretrained(out_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(out_dir)
