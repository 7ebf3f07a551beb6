"""Content-addressed genome files: ``weights/<sha256>.safetensors``.

A file holds the genome's flat buffer as one tensor and its layout (kind, names,
shapes) in the safetensors metadata. Saving copies a device genome once into a reused
host buffer (none for a genome already in host memory), hashes that buffer in place and
writes it with one file write; loading reads the file once and checks its hash on the
bytes read. The file name is the genome's content hash.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome, GenomeLayout, content_hash
from evo_merge.merge.lora_exact import LoraBasis
from evo_merge.weights_io import atomic_write_with

FORMAT = "evo-merge-genome/1"
HASH = re.compile(r"[0-9a-f]{64}")
BASIS_FORMAT = "evo-merge-lora-basis/1"


class WeightStore:
    """Saves and loads genomes by content hash under one folder. An exact-LoRA genome names
    its basis (the members' stacked A factors), which is stored once, also by content hash."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._staging: torch.Tensor | None = None  # host buffer for device genomes, reused
        self._bases: dict[str, LoraBasis] = {}
        # rebuilds a genome the store does not hold (None: it cannot); see RunStore
        self.fallback: Callable[[str], Genome | None] | None = None

    def path(self, digest: str) -> Path:
        """The file of a hash; anything but 64 lowercase hex digits (as a database or a job could
        hold, ``../../x`` say) is refused, so no path leaves the weights folder."""
        if not isinstance(digest, str) or not HASH.fullmatch(digest):
            raise EvoMergeError(f"invalid weights hash {str(digest)[:80]!r} in {self.root.parent}: "
                                "expected 64 lowercase hex digits")
        return self.root / f"{digest}.safetensors"

    def _host(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat`` in host memory: itself when it is there, else one copy into the reused buffer."""
        if flat.device.type == "cpu":
            return flat.detach().contiguous()
        nbytes = flat.numel() * flat.element_size()
        if self._staging is None or self._staging.numel() < nbytes:
            self._staging = torch.empty(nbytes, dtype=torch.uint8, pin_memory=torch.cuda.is_available())
        host = self._staging[:nbytes].view(flat.dtype)
        host.copy_(flat.detach())
        return host

    def digest(self, genome: Genome) -> str:
        """The genome's content hash (the name its file would have), without writing it."""
        return content_hash(genome.layout, self._host(genome.flat), genome.basis)

    def save(self, genome: Genome, digest: str | None = None) -> str:
        """Write the genome (once; identical genomes share a file) and return its hash.
        ``digest``: its hash, already computed from the same buffer (``digest``), not computed again."""
        host = self._host(genome.flat)
        digest = digest or content_hash(genome.layout, host, genome.basis)
        target = self.path(digest)
        if not target.exists():
            layout = genome.layout
            meta = {"format": FORMAT, "kind": layout.kind,
                    "names": json.dumps(layout.names), "shapes": json.dumps(layout.shapes)}
            if genome.basis is not None:
                meta["basis"] = self.save_basis(genome.basis)
            atomic_write_with(target, lambda tmp: save_file({"flat": host}, str(tmp), metadata=meta))
        return digest

    def save_basis(self, basis: LoraBasis) -> str:
        target = self.path(basis.digest)
        if not target.exists():
            meta = {"format": BASIS_FORMAT, "blocks": json.dumps(basis.blocks), "max_rank": json.dumps(basis.max_rank)}
            tensors = {p: a.contiguous() for p, a in basis.a.items()}
            atomic_write_with(target, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        self._bases[basis.digest] = basis
        return basis.digest

    def load_basis(self, digest: str) -> LoraBasis:
        if digest not in self._bases:
            target = self.path(digest)
            try:
                with safe_open(str(target), framework="pt") as fh:
                    meta = fh.metadata() or {}
                    a = {k: fh.get_tensor(k) for k in fh.keys()}
            except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
                raise EvoMergeError(f"LoRA basis file unreadable or missing: {target} "
                                    f"({str(exc).splitlines()[0] if str(exc) else 'bad format'})") from None
            if meta.get("format") != BASIS_FORMAT:
                raise EvoMergeError(f"{target} is not an evo-merge LoRA basis")
            basis = LoraBasis(a, [tuple(b) for b in json.loads(meta["blocks"])], json.loads(meta["max_rank"]))
            basis.digest = basis._hash()
            if basis.digest != digest:
                raise EvoMergeError(f"LoRA basis file corrupted (checksum mismatch): {target}")
            self._bases[digest] = basis
        return self._bases[digest]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def files(self) -> list[Path]:
        """Every weight (and LoRA basis) file in the store."""
        return sorted(self.root.glob("*.safetensors")) if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files() if p.is_file())

    def prune(self, keep: set[str]) -> list[str]:
        """Delete every file (and leftover temporary file of a killed write) whose hash is not
        in ``keep``; returns the hashes deleted."""
        deleted = []
        for path in self.files():
            digest = path.name[: -len(".safetensors")]
            if digest not in keep:
                path.unlink(missing_ok=True)
                deleted.append(digest)
        for tmp in self.root.glob(".*.safetensors.*.tmp") if self.root.is_dir() else []:
            tmp.unlink(missing_ok=True)
        return deleted

    def load(self, digest: str, device: torch.device | str = "cpu", verify: bool = True) -> Genome:
        """Read a genome; a missing, unreadable or altered file raises naming the file. A missing
        file of an individual the run did not write (or collected) is rebuilt from its recipe
        where the store knows how (``fallback``, set by ``RunStore``)."""
        target = self.path(digest)
        if not target.is_file() and self.fallback is not None:
            genome = self.fallback(digest)
            if genome is not None:
                return genome.to(device) if str(device) != "cpu" else genome
        if not target.is_file():
            raise EvoMergeError(f"weight file missing: {target}")
        try:
            with safe_open(str(target), framework="pt") as fh:
                meta = fh.metadata() or {}
                flat = fh.get_tensor("flat")
        except (SafetensorError, KeyError, OSError, ValueError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "bad format"
            raise EvoMergeError(f"weight file unreadable: {target} ({reason})") from None
        if meta.get("format") != FORMAT:
            raise EvoMergeError(f"weight file {target} is not an evo-merge genome")
        layout = GenomeLayout(meta["kind"], tuple(json.loads(meta["names"])),
                              tuple(tuple(s) for s in json.loads(meta["shapes"])), flat.dtype)
        basis = self.load_basis(meta["basis"]) if "basis" in meta else None
        if verify and content_hash(layout, flat, basis) != digest:
            raise EvoMergeError(f"weight file corrupted (checksum mismatch): {target}")
        genome = Genome(layout, flat, basis)
        return genome.to(device) if str(device) != "cpu" else genome
