"""``evo-merge merge``: a one-shot merge, like ``mergekit-yaml``."""

from __future__ import annotations

from pathlib import Path

import typer

from evo_merge.cli.output import console


def _size(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    t = text.strip().upper().removesuffix("B")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a size like 5G, 500M or 1000000") from None


def merge(config: Path = typer.Argument(..., help="merge config YAML (mergekit's schema)"),
          out: Path = typer.Argument(..., help="output Hugging Face model directory"),
          device: str = typer.Option("cpu", help="where the math runs: cpu or cuda[:N]"),
          shard_size: str = typer.Option("5G", "--out-shard-size", help="largest output shard, as in mergekit")) -> None:
    """One-shot merge of given models into a Hugging Face model directory, like mergekit-yaml."""
    from evo_merge.oneshot import merge_from_config

    merge_from_config(config, out, device=device, shard_bytes=_size(shard_size))
    console.print(f"wrote {out}")
