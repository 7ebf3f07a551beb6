"""``evo-merge eval``: score a model, adapter or run individual on task specs, with predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from evo_merge.cli.output import console
from evo_merge.errors import EvoMergeError

SPLITS = {"fitness": ["fitness"], "test": ["test"], "both": ["fitness", "test"]}


def eval_(target: str = typer.Argument(..., metavar="MODEL_DIR|ADAPTER_DIR|RUN_DIR[:ID]",
                                       help="a model or PEFT adapter directory (or Hub id), or a run's individual"),
          specs: list[Path] = typer.Argument(..., metavar="TASK_SPEC...", help="task spec YAML files"),
          split: str = typer.Option("fitness", help="fitness, test or both"),
          show: int = typer.Option(5, help="predictions shown per task"),
          base: Optional[str] = typer.Option(None, help="an adapter's base model (default: its adapter_config)"),
          device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1"),
          dtype: str = typer.Option("auto", help="auto, float32, bfloat16, float16"),
          batch_size: int = typer.Option(64, "--batch-size", help="rows per forward"),
          trust_remote_code: bool = typer.Option(False, "--trust-remote-code")) -> None:
    """Score a model, adapter or individual on task specs and show predictions next to the answers."""
    from evo_merge.evaluate import evaluate, load_target

    if split not in SPLITS:
        raise EvoMergeError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    with console.status("loading the model and the tasks"):
        model, tokenizer, what = load_target(target, device, dtype, base, trust_remote_code)
    console.print(f"scoring {what}")
    for res in evaluate(model, tokenizer, list(specs), SPLITS[split], batch_size, show):
        table = Table(title=f"{res.task} ({res.split} split): {res.score:.4f} over {res.rows} rows")
        for col in ("prompt", "prediction", "answer", ""):
            table.add_column(col)
        for prompt, prediction, answer, right in res.samples:
            table.add_row(prompt, prediction, repr(answer), "ok" if right else "wrong")
        console.print(table)
        if res.by_task:
            console.print("by task: " + ", ".join(f"{name} {score:.4f} ({rows} rows)"
                                                  for name, (score, rows) in res.by_task.items()))
