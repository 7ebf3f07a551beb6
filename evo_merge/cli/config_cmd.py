"""``evo-merge config``: a run config with every field shown, or the defaults (``--defaults``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evo_merge.errors import EvoMergeError


def config(path: Optional[Path] = typer.Argument(None, metavar="[CONFIG]", help="a run config YAML: print it "
                                                                              "with every default filled in"),
           defaults: bool = typer.Option(False, "--defaults", help="print the default run config: every field "
                                                                   "with its default and a short comment")) -> None:
    """Print the default run config (--defaults), or CONFIG with every field shown, as commented YAML."""
    from evo_merge.config_doc import render, render_defaults

    if defaults == (path is not None):
        raise EvoMergeError("give exactly one of CONFIG and --defaults")
    if defaults:
        text = render_defaults()
    else:
        from evo_merge.config import load_run_config

        text = render(load_run_config(path), f"{path} with every default filled in and its paths resolved.")
    typer.echo(text, nl=False)
