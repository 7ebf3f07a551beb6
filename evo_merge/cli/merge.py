"""``evo-merge merge``: a one-shot merge, like ``mergekit-yaml``."""

from __future__ import annotations

from pathlib import Path

import typer

from evo_merge.cli.output import console


def merge(config: Path = typer.Argument(..., help="merge config YAML (mergekit-style)"),
          out: Path = typer.Argument(..., help="output Hugging Face model directory")) -> None:
    """One-shot merge of given models into a Hugging Face model directory, like mergekit-yaml."""
    from evo_merge.oneshot import merge_from_config

    merge_from_config(config, out)
    console.print(f"wrote {out}")
