"""Safetensors files read and written one tensor at a time.

Reading: each shard's header is parsed once (names, dtypes, shapes, byte ranges) and a
tensor is read with one positioned read into its own buffer, so only the tensors being
merged are in memory (safetensors' ``safe_open`` maps whole files, whose touched pages
then count against the process). Writing: every output tensor's name, dtype and shape are
known before the first is computed, so each shard's header is written first and tensors
are appended as they are made; nothing waits in memory for a shard to fill. The format is
safetensors' (8-byte little-endian header length, JSON header, raw little-endian data).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.weights_io import safetensors_files

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
CODES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class TensorInfo:
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # absolute byte offset in the file
    nbytes: int


def read_header(path: Path) -> dict[str, TensorInfo]:
    """The tensors of one safetensors file, by name."""
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > _MAX_HEADER:
                raise ValueError(f"header of {size} bytes")
            header = json.loads(fh.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise EvoMergeError(f"cannot read {path}: not a safetensors file ({exc})") from None
    header.pop("__metadata__", None)
    out = {}
    for name, meta in header.items():
        if meta.get("dtype") not in DTYPES:
            raise EvoMergeError(f"{path}: tensor {name} has unsupported dtype {meta.get('dtype')!r}")
        try:
            begin, end = meta["data_offsets"]
            shape = tuple(int(d) for d in meta["shape"])
        except (KeyError, TypeError, ValueError):
            raise EvoMergeError(f"{path}: tensor {name} has a malformed header entry") from None
        dtype = DTYPES[meta["dtype"]]
        if end - begin != math.prod(shape) * torch.empty((), dtype=dtype).element_size() or begin < 0:
            raise EvoMergeError(f"{path}: tensor {name}: its byte range does not match its shape and dtype")
        out[name] = TensorInfo(path, dtype, shape, 8 + size + begin, end - begin)
    return out


class TensorReader:
    """The tensors of a model directory's ``*.safetensors`` files (or those starting with ``prefix``)."""

    def __init__(self, directory: Path, prefix: str | None = None):
        files = safetensors_files(directory, prefix)
        self.directory = Path(directory)
        self.infos: dict[str, TensorInfo] = {}
        for f in files:
            for name, info in read_header(f).items():
                if name in self.infos:
                    raise EvoMergeError(f"tensor {name} appears in two shards of {directory}")
                self.infos[name] = info
        self._fds: dict[Path, int] = {}

    def read(self, name: str, device: str | torch.device = "cpu", into: torch.Tensor | None = None) -> torch.Tensor:
        """Tensor ``name``, read into the front of the uint8 buffer ``into`` when it is large enough
        (a buffer reused from tensor to tensor costs no fresh pages), else into a new one."""
        info = self.infos[name]
        fd = self._fds.get(info.file)
        if fd is None:
            fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
        buf = into[:info.nbytes] if into is not None and into.numel() >= info.nbytes else \
            torch.empty(info.nbytes, dtype=torch.uint8)
        view, got = memoryview(buf.numpy()), 0
        while got < info.nbytes:
            n = os.preadv(fd, [view[got:]], info.begin + got)
            if n <= 0:
                raise EvoMergeError(f"{info.file}: truncated while reading {name}")
            got += n
        t = buf.view(info.dtype).reshape(info.shape) if info.nbytes else torch.empty(info.shape, dtype=info.dtype)
        return t.to(device) if torch.device(device).type != "cpu" else t

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def shard_names(n: int, stem: str = "model") -> list[str]:
    return [f"{stem}.safetensors"] if n == 1 else [f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


class ShardedWriter:
    """Writes tensors, in the order announced, into shards of at most ``max_shard_bytes``."""

    def __init__(self, out: Path, plan: Iterable[tuple[str, torch.dtype, tuple[int, ...]]], max_shard_bytes: int):
        self.out = Path(out)
        shards: list[list[tuple[str, torch.dtype, tuple[int, ...]]]] = [[]]
        size = 0
        for name, dtype, shape in plan:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append((name, dtype, tuple(shape)))
            size += nbytes
        self.files = shard_names(len(shards))
        self.expected = [(name, dtype, shape, i) for i, shard in enumerate(shards) for name, dtype, shape in shard]
        self.shards = shards
        self.total = 0
        self._next = 0
        self._fh = None
        self._shard = -1

    def _open(self, index: int) -> None:
        if self._fh:
            self._fh.close()
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, dtype, shape in self.shards[index]:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._fh = open(self.out / self.files[index], "wb")
        self._fh.write(struct.pack("<Q", len(raw)) + raw)
        self._shard = index

    def write(self, name: str, tensor: torch.Tensor) -> None:
        want, dtype, shape, shard = self.expected[self._next]
        if name != want or tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise EvoMergeError(f"internal: wrote {name} {tensor.dtype} {list(tensor.shape)}, planned {want} "
                                f"{dtype} {list(shape)}")
        if shard != self._shard:
            self._open(shard)
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        self._fh.write(memoryview(data.numpy()))
        self.total += data.numel()
        self._next += 1

    def close(self) -> None:
        """Close the shard being written (after an error; ``finish`` closes it otherwise)."""
        if self._fh:
            self._fh.close()
            self._fh = None

    def finish(self) -> None:
        if self._next != len(self.expected):
            raise EvoMergeError(f"internal: {self._next} of {len(self.expected)} tensors written")
        self.close()
        if len(self.files) > 1:
            index = {"metadata": {"total_size": self.total},
                     "weight_map": {name: self.files[i] for name, _, _, i in self.expected}}
            (self.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
