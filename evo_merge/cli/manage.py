"""Commands that act on one run directory's weights: ``export``, ``replay``, ``gc``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evo_merge.cli.output import console
from evo_merge.errors import EvoMergeError


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


def replay(run_dir: Path = typer.Argument(..., help="run directory"),
           ind_id: int = typer.Argument(..., metavar="ID", help="individual id"),
           device: Optional[str] = typer.Option(None, help="device to rebuild on (default: the run's eval.device)")
           ) -> None:
    """Rebuild an individual from its ancestors' weights and recorded recipe; check it equals the stored one."""
    from evo_merge.model_host import resolve_device
    from evo_merge.replay import replay as replay_individual
    from evo_merge.runner import load_stored_config
    from evo_merge.store import RunStore

    with RunStore.open(run_dir) as store:
        dev = resolve_device(device or load_stored_config(store).eval.device)
        res = replay_individual(store, ind_id, dev)
    extra = "" if res.velocity_equal is None else f", velocity {'equal' if res.velocity_equal else 'DIFFERS'}"
    console.print(f"individual {ind_id}: rebuilt on {dev} ({res.rebuilt_ancestors} collected ancestor(s) rebuilt "
                  f"too); weights {'equal' if res.weights_equal else 'DIFFER'}{extra}")
    if not res.weights_equal or res.velocity_equal is False:
        raise EvoMergeError(f"individual {ind_id} does not replay to its stored weights")


def gc(run_dir: Path = typer.Argument(..., help="run directory of a finished run"),
       dry_run: bool = typer.Option(False, "--dry-run", help="only report what would be deleted")) -> None:
    """Delete the weights of dead individuals; they stay replayable from the members."""
    from evo_merge.replay import collect_garbage
    from evo_merge.store import RunStore

    with RunStore.open(run_dir, lock=True) as store:
        rep = collect_garbage(store, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {rep.deleted_files} weight file(s), {rep.freed_bytes / 2**20:.1f} MiB; "
                  f"kept the weights of {rep.kept_individuals} living individual(s) and the members")
