"""What a model directory holds, as one digest: the identity a run records for its base and members.

A run records, when it starts, where each model came from (a Hub id and its commit, or a local
directory) and the digest of its files (``inputs/population.lock.json`` in the run directory).
Commands that read the models later (``export``, ``eval RUN:ID``, ``resume``) resolve them from
that record and refuse a model whose digest changed.

The digest is SHA-256 over every weight file's name and size and:

- a model whose ``*.safetensors`` files total at most 256 MiB (every LoRA adapter, small models):
  all their bytes;
- a larger model, each of its files: its safetensors header (names, dtypes, shapes, offsets) and 64 evenly spaced
  64 KiB samples of its data, so a model of multi-GB shards is checked in milliseconds (a model
  trained again, even with the same shapes, differs in every sample);
- ``config.json``, ``adapter_config.json`` and ``model.safetensors.index.json`` as parsed JSON,
  without the keys that only name paths or versions (``base_model_name_or_path``, ...).

Tokenizer files do not count. A digest is computed once per process for unchanged files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FULL_LIMIT = 256 << 20
SAMPLES, SAMPLE = 64, 64 << 10
JSON_FILES = ("config.json", "adapter_config.json", "model.safetensors.index.json")
PATH_KEYS = {"base_model_name_or_path", "_name_or_path", "transformers_version", "revision"}

_cache: dict[tuple, str] = {}


def weight_files(path: Path) -> list[Path]:
    return sorted(f for f in Path(path).iterdir()
                  if f.is_file() and (f.name.endswith(".safetensors") or f.name in JSON_FILES))


def model_digest(path: Path) -> str:
    """The digest of a model or adapter directory's weight files (module docstring)."""
    path = Path(path)
    files = weight_files(path)
    key = (str(path.resolve()), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key in _cache:
        return _cache[key]
    h = hashlib.sha256()
    # the limit is on the model, not on each file: many small shards of a big model are sampled too
    whole = sum(f.stat().st_size for f in files if f.name.endswith(".safetensors")) <= FULL_LIMIT
    for f in files:
        h.update(f.name.encode() + b"\0")
        if f.name.endswith(".json"):
            h.update(_json_bytes(f))
        else:
            _hash_safetensors(f, h, whole)
        h.update(b"\0")
    _cache[key] = digest = h.hexdigest()
    return digest


def _json_bytes(f: Path) -> bytes:
    raw = f.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in PATH_KEYS}
    return json.dumps(data, sort_keys=True).encode()


def _hash_safetensors(f: Path, h, whole: bool) -> None:
    size = f.stat().st_size
    h.update(f"{size}\0".encode())
    with open(f, "rb") as fh:
        if whole:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
            return
        head = fh.read(8)
        n = min(int.from_bytes(head, "little"), size - 8)
        h.update(head + fh.read(n))
        start = 8 + n
        span = max(0, size - start - SAMPLE)
        for i in range(SAMPLES):
            fh.seek(start + span * i // (SAMPLES - 1))
            h.update(fh.read(SAMPLE))
