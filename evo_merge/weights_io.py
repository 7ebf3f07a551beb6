"""Safetensors-only weight I/O and atomic file writes. Pickle files are never loaded."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from evo_merge.errors import EvoMergeError


def safetensors_files(path: Path, prefix: str | None = None) -> list[Path]:
    """The ``*.safetensors`` files of a model directory (those starting with ``prefix``, if given);
    a missing directory, or one with only pickle checkpoints (``*.bin``, ``*.pt``), is refused."""
    path = Path(path)
    if not path.is_dir():
        raise EvoMergeError(f"model directory not found: {path}")
    files = sorted(f for f in path.glob("*.safetensors") if prefix is None or f.name.startswith(prefix))
    if not files:
        pickles = [f.name for f in path.iterdir() if f.suffix in {".bin", ".pt", ".pth", ".ckpt"}]
        hint = f" (found {pickles[0]}: pickle checkpoints are not loaded; convert to safetensors)" if pickles else ""
        raise EvoMergeError(f"no safetensors weights in {path}{hint}")
    return files


def load_safetensors_dir(path: Path, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """All tensors of the ``*.safetensors`` files in ``path`` (shards merged).

    ``prefix`` keeps only files whose name starts with it (``adapter_model`` for PEFT).
    A folder with only pickle checkpoints (``*.bin``, ``*.pt``) is refused.
    """
    path = Path(path)
    files = safetensors_files(path, prefix)
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            part = load_file(str(f))
        except (SafetensorError, OSError, ValueError) as exc:
            raise EvoMergeError(f"cannot read {f}: {str(exc).splitlines()[0]}") from None
        for key in part:
            if key in tensors:
                raise EvoMergeError(f"tensor {key} appears in two shards of {path}")
        tensors.update(part)
    return tensors


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write_with(path, write)


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a temporary file beside ``path``; fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
