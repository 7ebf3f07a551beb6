"""An individual's weights: named tensors that differ from a shared base, with a flat view.

A genome is a set of LoRA adapter tensors (PEFT key names: ``lora``, both factors;
``lora_exact``, the B factors over a basis of the members' A factors shared by the whole
population, see ``merge/lora_exact.py``) or full-weight deltas (fine-tuned minus base).
All tensors live in one contiguous 1-D buffer of a single dtype,
so vector operations (merging, mutation, particle-swarm steps) touch one tensor, while
``tensors()`` gives per-name views into that buffer without copying.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import torch

from evo_merge.errors import EvoMergeError

GenomeKind = Literal["lora", "lora_exact", "delta"]


@dataclass(frozen=True)
class GenomeLayout:
    """Names, shapes and dtype of a genome: what two genomes must share to be merged."""

    kind: GenomeKind
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def offsets(self) -> list[tuple[int, int]]:
        """(start, end) of each tensor in the flat buffer."""
        out, pos = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append((pos, pos + n))
            pos += n
        return out

    def check_same(self, other: "GenomeLayout", what: str = "genome") -> None:
        """Raise a one-line error naming the first difference between two layouts."""
        if self.kind != other.kind:
            raise EvoMergeError(f"{what}: kind {other.kind!r} does not match {self.kind!r}")
        if self.names != other.names:
            missing = sorted(set(self.names) - set(other.names))
            extra = sorted(set(other.names) - set(self.names))
            detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
            raise EvoMergeError(f"{what}: tensor names differ ({detail})")
        for name, a, b in zip(self.names, self.shapes, other.shapes):
            if a != b:
                raise EvoMergeError(f"{what}: tensor {name} has shape {list(b)}, expected {list(a)}")
        if self.dtype != other.dtype:
            raise EvoMergeError(f"{what}: dtype {other.dtype} does not match {self.dtype}")


class Genome:
    """Named tensors in one flat buffer. Construction never copies ``flat``."""

    __slots__ = ("layout", "flat", "basis")

    def __init__(self, layout: GenomeLayout, flat: torch.Tensor, basis: Any = None):
        if flat.dim() != 1 or flat.numel() != layout.numel:
            raise EvoMergeError(f"flat buffer has {flat.numel()} values, layout needs {layout.numel}")
        if flat.dtype != layout.dtype:
            raise EvoMergeError(f"flat buffer dtype {flat.dtype} does not match layout {layout.dtype}")
        if (layout.kind == "lora_exact") != (basis is not None):
            raise EvoMergeError(f"a {layout.kind} genome {'needs' if basis is None else 'has no use for'} a LoRA basis")
        self.layout = layout
        self.flat = flat
        self.basis = basis  # lora_exact: the shared LoraBasis the B factors refer to

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], kind: GenomeKind,
                     check_finite: bool = True, what: str = "genome", basis: Any = None) -> "Genome":
        """Pack named tensors (sorted by name) into one buffer; all must share a dtype."""
        if not tensors:
            raise EvoMergeError(f"{what}: no tensors")
        names = tuple(sorted(tensors))
        dtypes = {tensors[n].dtype for n in names}
        if len(dtypes) != 1:
            raise EvoMergeError(f"{what}: mixed dtypes {sorted(map(str, dtypes))}; convert to one dtype")
        dtype = dtypes.pop()
        if not dtype.is_floating_point:
            raise EvoMergeError(f"{what}: dtype {dtype} is not floating point")
        layout = GenomeLayout(kind, names, tuple(tuple(tensors[n].shape) for n in names), dtype)
        flat = torch.cat([tensors[n].detach().reshape(-1) for n in names]) if names else torch.empty(0)
        genome = cls(layout, flat.contiguous(), basis)
        if check_finite:
            genome.check_finite(what)
        return genome

    def tensors(self) -> dict[str, torch.Tensor]:
        """Per-name views into the flat buffer (no copies)."""
        return {
            name: self.flat[a:b].view(shape)
            for name, shape, (a, b) in zip(self.layout.names, self.layout.shapes, self.layout.offsets())
        }

    def with_flat(self, flat: torch.Tensor) -> "Genome":
        """A genome of the same layout over another buffer (cast to the layout's dtype)."""
        return Genome(self.layout, flat.to(self.layout.dtype).contiguous(), self.basis)

    def to(self, device: torch.device | str) -> "Genome":
        return Genome(self.layout, self.flat.to(device), self.basis)

    def clone(self) -> "Genome":
        return Genome(self.layout, self.flat.clone(), self.basis)

    def check_finite(self, what: str = "genome") -> None:
        """Raise naming the first tensor that holds NaN or Inf."""
        if bool(torch.isfinite(self.flat).all()):
            return
        for name, t in self.tensors().items():
            if not bool(torch.isfinite(t).all()):
                raise EvoMergeError(f"{what}: tensor {name} holds NaN or Inf values")

    def content_hash(self) -> str:
        """sha256 over layout and raw bytes: equal hashes mean bit-identical genomes."""
        return content_hash(self.layout, self.flat.detach().cpu().contiguous(), self.basis)

    def nbytes(self) -> int:
        return self.flat.numel() * self.flat.element_size()

    def __repr__(self) -> str:
        return (f"Genome(kind={self.layout.kind}, tensors={len(self.layout.names)}, "
                f"numel={self.layout.numel}, dtype={self.layout.dtype})")


def content_hash(layout: GenomeLayout, host_flat: torch.Tensor, basis: Any = None) -> str:
    """sha256 over the layout (and the LoRA basis it refers to) and the raw bytes of a flat
    buffer in host memory, read in place (a memoryview of the buffer, no copy)."""
    h = hashlib.sha256()
    h.update(layout.kind.encode())
    if basis is not None:
        h.update(f"basis:{basis.digest};".encode())
    h.update(str(layout.dtype).encode())
    for name, shape in zip(layout.names, layout.shapes):
        h.update(f"{name}:{shape};".encode())
    if host_flat.numel():
        h.update(memoryview(host_flat.view(torch.uint8).numpy()))
    return h.hexdigest()
