"""``evo-merge export``: registers the command on the CLI's typer app (imported by ``evo_merge.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evo_merge.cli import app, console
from evo_merge.errors import EvoMergeError


@app.command()
def export(run_dir: Path = typer.Argument(..., help="run directory"),
           out: Path = typer.Argument(..., help="output directory (must not exist, or be empty)"),
           id: Optional[int] = typer.Option(None, "--id", help="individual id (see `evo-merge lineage`)"),
           best: bool = typer.Option(False, "--best", help="the run's best: the report's evolved best "
                                                            "(or searched composition)"),
           merge_lora: bool = typer.Option(False, "--merge-lora", help="LoRA: write a full model with the "
                                                                        "adapter merged into the base")) -> None:
    """Write one individual as a Hugging Face model (or PEFT adapter) directory, with its lineage
    and, where its history allows, a mergekit config that redoes it."""
    from evo_merge.export import export_individual

    if (id is None) == (not best):
        raise EvoMergeError("give exactly one of --id ID and --best")
    res = export_individual(run_dir, id, out, merge_lora=merge_lora)
    ind = res.individual
    how = f"{ind.operator}" + (f" {ind.method}" if ind.method else "") + (f" {ind.name}" if ind.name else "")
    fit = "" if ind.fitness is None else f", fitness {ind.fitness:.4f}"
    test = "" if ind.test_score is None else f", test {ind.test_score:.4f}"
    chosen = "" if res.chosen_by == "--id" else f" ({res.chosen_by})"
    what = "Hugging Face model" if res.format == "model" else "PEFT adapter"
    for line in (f"individual {ind.id}{chosen}: {how}{fit}{test}",
                 f"wrote {what} directory {res.out}: {', '.join(res.files)}",
                 f"mergekit config: {res.mergekit_config}" if res.mergekit_config is not None else None,
                 res.note):
        if line:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
