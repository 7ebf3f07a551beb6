"""A run directory's own copy of its inputs, so that it does not depend on files outside it that can change.

When a run starts, ``RUN_DIR/inputs/`` gets:

- ``population.yaml``, the population spec as written, and ``population.lock.json``, the identity of
  the base and of each member (``population.population_record``: Hub id and commit, or local
  directory, and a digest of the weight files). ``export``, ``eval RUN:ID`` and ``resume`` load the
  population from this pair: every model is found where the record says, never rebuilt, and one
  whose digest changed is refused with one line naming it.
- ``tasks/<i>/<spec file>``, each task spec as written (the run's tasks, then its heldout tasks), with
  its local data file at the same relative path when the spec names it by a path inside the spec's
  folder and it is at most 64 MiB. A spec whose copy would not read the same data (a data file
  outside its folder or larger, a relative lm-eval ``include_path``, a task entry that overrides
  ``dataset`` or ``lm_eval``) is copied too, but the run keeps reading the original. Either way a
  resume checks each task's digest of spec and examples.
- ``manifest.json``, written last: which copy stands for which original.

Plugins are not copied: they are code, imported by their path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from evo_merge.config import RunConfig, TaskRef
from evo_merge.errors import EvoMergeError
from evo_merge.fitness.tasks import LOCAL_FORMATS
from evo_merge.population import Population, population_record, record_path
from evo_merge.weights_io import atomic_write_text, atomic_write_with
from evo_merge.yamlfile import read_yaml

INPUTS = "inputs"
MANIFEST = "manifest.json"
POPULATION_FILE = "population.yaml"
DATA_LIMIT = 64 << 20


def ensure_inputs(root: Path, cfg: RunConfig, population: Population) -> None:
    """Copy a new run's inputs into it; for a resumed one, check its members against the record."""
    manifest = read_manifest(root)
    if manifest is None:
        snapshot_inputs(root, cfg, population)
        return
    recorded = json.loads(record_path(Path(root) / INPUTS / POPULATION_FILE).read_text())
    now = population_record(population)
    for key, what in [("base", "base model")] + [(n, f"member {n}") for n in recorded["members"]]:
        want = recorded["base"] if key == "base" else recorded["members"][key]
        got = now["base"] if key == "base" else now["members"].get(key)
        if got is None or got["digest"] != want["digest"]:
            raise EvoMergeError(f"cannot resume {root}: {what} is not the model the run started with "
                                f"({want.get('hub') or want.get('path')})")


def snapshot_inputs(root: Path, cfg: RunConfig, population: Population) -> None:
    inputs = Path(root) / INPUTS
    spec_copy = inputs / POPULATION_FILE
    _copy(Path(cfg.population), spec_copy)
    atomic_write_text(record_path(spec_copy), json.dumps(population_record(population), indent=2) + "\n")
    tasks = [_copy_task(ref, inputs, i) for i, ref in enumerate(cfg.tasks + cfg.heldout_tasks)]
    manifest = {"population": {"original": str(cfg.population), "copy": POPULATION_FILE}, "tasks": tasks}
    atomic_write_text(inputs / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def read_manifest(root: Path) -> dict | None:
    path = Path(root) / INPUTS / MANIFEST
    if not path.is_file():
        return None  # a run from before inputs were copied, or stopped before its copy was complete
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EvoMergeError(f"{path}: unreadable ({exc})") from None


def redirect_config(root: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A run's stored config with its population and task spec paths pointing at the run's own copies."""
    manifest = read_manifest(root)
    if manifest is None:
        return data
    inputs = Path(root).resolve() / INPUTS
    try:
        out = {**data, "population": str(_inside(inputs, manifest["population"]["copy"]))}
        tasks, heldout = list(data.get("tasks") or []), list(data.get("heldout_tasks") or [])
        refs = [dict(r) for r in tasks + heldout]
        for ref, entry in zip(refs, manifest["tasks"]):
            if entry.get("self_contained"):
                ref["spec"] = str(_inside(inputs, entry["copy"]))
    except (KeyError, TypeError, AttributeError):
        raise EvoMergeError(f"{inputs / MANIFEST}: malformed (expected the entries a run writes)") from None
    out["tasks"], out["heldout_tasks"] = refs[:len(tasks)], refs[len(tasks):]
    return out


def _inside(inputs: Path, relative: str) -> Path:
    """``inputs / relative``, refused in one line unless it stays inside the run's inputs folder."""
    path = (inputs / str(relative)).resolve()
    if not path.is_relative_to(inputs):
        raise EvoMergeError(f"{inputs / MANIFEST}: path {relative!r} leaves the run's inputs folder")
    return path


def _copy_task(ref: TaskRef, inputs: Path, i: int) -> dict[str, Any]:
    spec_path = Path(ref.spec)
    folder = Path(str(i))
    entry: dict[str, Any] = {"original": str(spec_path), "copy": str(Path("tasks") / folder / spec_path.name),
                             "data": None, "self_contained": True}
    data = read_yaml(spec_path, "task spec")
    here = spec_path.resolve().parent
    overridden = {str(k).split(".")[0] for k in ref.overrides} & {"dataset", "lm_eval"}
    dataset, lm_eval = data.get("dataset"), data.get("lm_eval")
    if isinstance(dataset, dict) and "path" in dataset:
        written = Path(str(dataset["path"]))
        local = written if written.is_absolute() else here / written
        if written.suffix.lower() not in LOCAL_FORMATS:
            entry["data"] = "a dataset on the Hugging Face Hub: not copied"
        elif written.is_absolute():
            entry["data"] = f"an absolute path: not copied ({written})"
        elif ".." not in written.parts and local.is_file() and local.stat().st_size <= DATA_LIMIT:
            _copy(local, inputs / "tasks" / folder / written)
            entry["data"] = str(Path("tasks") / folder / written)
        else:
            entry["data"] = f"outside the spec's folder or over {DATA_LIMIT >> 20} MiB: not copied ({local})"
            entry["self_contained"] = False
    if isinstance(lm_eval, dict) and lm_eval.get("include_path") and not Path(lm_eval["include_path"]).is_absolute():
        entry["self_contained"] = False
    if overridden:
        entry["self_contained"] = False
    _copy(spec_path, inputs / entry["copy"])
    return entry


def _copy(src: Path, dst: Path) -> None:
    atomic_write_with(dst, lambda tmp: shutil.copyfile(src, tmp))
