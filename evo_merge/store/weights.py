"""Content-addressed genome files: ``weights/<sha256>.safetensors``.

A file holds the genome's flat buffer as one tensor and its layout (kind, names,
shapes) in the safetensors metadata, so a save and a load are each one contiguous
copy. The file name is the genome's content hash, which is checked on every read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome, GenomeLayout
from evo_merge.weights_io import atomic_write_bytes

FORMAT = "evo-merge-genome/1"


class WeightStore:
    """Saves and loads genomes by content hash under one folder."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        return self.root / f"{digest}.safetensors"

    def save(self, genome: Genome) -> str:
        """Write the genome (once; identical genomes share a file) and return its hash."""
        digest = genome.content_hash()
        target = self.path(digest)
        if not target.exists():
            layout = genome.layout
            meta = {"format": FORMAT, "kind": layout.kind,
                    "names": json.dumps(layout.names), "shapes": json.dumps(layout.shapes)}
            atomic_write_bytes(target, save({"flat": genome.flat.detach().cpu().contiguous()}, metadata=meta))
        return digest

    def load(self, digest: str, device: torch.device | str = "cpu", verify: bool = True) -> Genome:
        """Read a genome; a missing, unreadable or altered file raises naming the file."""
        target = self.path(digest)
        if not target.is_file():
            raise EvoMergeError(f"weight file missing: {target}")
        raw = target.read_bytes()
        try:
            from safetensors import safe_open  # metadata lives in the header
            with safe_open(str(target), framework="pt") as fh:
                meta = fh.metadata() or {}
            flat = load(raw)["flat"]
        except (SafetensorError, KeyError, OSError, ValueError) as exc:
            raise EvoMergeError(f"weight file unreadable: {target} ({str(exc).splitlines()[0] if str(exc) else 'bad format'})") from None
        if meta.get("format") != FORMAT:
            raise EvoMergeError(f"weight file {target} is not an evo-merge genome")
        layout = GenomeLayout(meta["kind"], tuple(json.loads(meta["names"])),
                              tuple(tuple(s) for s in json.loads(meta["shapes"])), flat.dtype)
        genome = Genome(layout, flat)
        if verify and genome.content_hash() != digest:
            raise EvoMergeError(f"weight file corrupted (checksum mismatch): {target}")
        return genome.to(device) if str(device) != "cpu" else genome
