"""``evo-merge export``: one individual of a run as a Hugging Face model or PEFT adapter directory.

A full-weight individual becomes a model directory (base + delta); a LoRA individual a
PEFT adapter directory over the population's base (or, with ``merge_lora``, a model
directory with the adapter merged in). Next to the weights go the tokenizer,
``evo_merge_individual.json`` (the individual's lineage row and its ancestors) and, when
the individual is one merge of members with a method mergekit knows,
``mergekit_config.yml`` that redoes that merge with mergekit. Everything is written to a
temporary sibling directory that is renamed into place only when complete.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from evo_merge.atomic_dir import atomic_dir
from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.operators.base import operator
from evo_merge.plugins import load_plugins
from evo_merge.population import Population, load_population
from evo_merge.run_inputs import redirect_config
from evo_merge.store import Individual, RunStore

INDIVIDUAL_FILE = "evo_merge_individual.json"
MERGEKIT_FILE = "mergekit_config.yml"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ExportResult:
    """What ``export_individual`` wrote."""

    out: Path
    individual: Individual
    chosen_by: str                 # "--id", "evolved best", "searched composition" or "highest fitness"
    format: str                    # "model" (Hugging Face model directory) or "adapter" (PEFT adapter directory)
    files: list[str] = field(default_factory=list)
    mergekit_config: Path | None = None
    note: str | None = None        # why there is no mergekit config, or how far it is from the exported weights


def export_individual(run_dir: Path, ind_id: int | None, out: Path, merge_lora: bool = False) -> ExportResult:
    """Write individual ``ind_id`` of the run (the run's best when None) to the new directory ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    _check_out(out)
    if not run_dir.is_dir():
        raise EvoMergeError(f"run directory not found: {run_dir}")
    store = RunStore.open(run_dir)
    try:
        ind, chosen_by = choose_individual(store, ind_id)
        genome = store.weights.load(ind.weights)
        lineage = store.lineage.ancestors(ind.id)
        population, cfg = run_population(store)
    finally:
        store.close()
    spec_path = cfg["population"]
    trust_remote_code = bool(cfg.get("trust_remote_code", False))
    if genome.layout.kind != population.genome_kind("exact" if genome.layout.kind == "lora_exact" else "factors"):
        raise EvoMergeError(f"individual {ind.id} holds {genome.layout.kind} weights, but population "
                            f"{population.spec.name} ({spec_path}) is kind {population.spec.kind!r}")
    by_id = {a.id: a for a in lineage}
    kmerge, note = mergekit_config(ind, [by_id[p] for p in ind.parents if p in by_id], population,
                                   _dtype_name(genome.layout.dtype))

    def build(tmp: Path) -> str:
        if genome.layout.kind == "delta":
            fmt = "model"
            _write_full_model(population, genome, tmp, trust_remote_code)
        elif merge_lora:
            fmt = "model"
            _write_merged_lora(population, genome, tmp, trust_remote_code)
        else:
            fmt = "adapter"
            _write_adapter(population, genome, tmp, trust_remote_code)
        info = {**_row(ind), "run_dir": str(run_dir.resolve()), "chosen_by": chosen_by,
                "population": str(spec_path), "population_kind": population.spec.kind,
                "base_model": population.external(None), "format": fmt,
                "mergekit_config": MERGEKIT_FILE if kmerge else None, "mergekit_note": note,
                "lineage": [_row(a) for a in lineage]}
        (tmp / INDIVIDUAL_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if kmerge is not None:
            (tmp / MERGEKIT_FILE).write_text(kmerge)
        return fmt

    fmt = atomic_dir(out, build)
    return ExportResult(out, ind, chosen_by, fmt, sorted(p.name for p in out.iterdir()),
                        out / MERGEKIT_FILE if kmerge else None, note)


def run_population(store: RunStore) -> tuple[Population, dict]:
    """The population a run evolved (its plugins loaded) and the run's config. A run's base and
    members come from its own record (``run_inputs``): found where they were when the run started,
    checked against their digests, never rebuilt."""
    cfg = _run_config(store)
    load_plugins(cfg.get("plugins") or [])
    spec_path = redirect_config(store.root, cfg).get("population")
    if not spec_path:
        raise EvoMergeError(f"{store.root}: the run's config names no population")
    return load_population(Path(spec_path)), cfg


def choose_individual(store: RunStore, ind_id: int | None) -> tuple[Individual, str]:
    """Individual ``ind_id``, or the run's best: the report's 'evolved best' (or a search run's
    'searched composition'), else the individual with the highest fitness-set score."""
    if ind_id is not None:
        ind = store.lineage.get(ind_id)
        if ind is None:
            raise EvoMergeError(f"no individual {ind_id} in {store.root}")
        return ind, "--id"
    results = {r["name"]: r for r in store.lineage.results()}
    for label in ("evolved best", "searched composition"):
        chosen = (results.get(label) or {}).get("detail", {}).get("id")
        if chosen is not None and (ind := store.lineage.get(chosen)) is not None:
            return ind, label
    scored = [i for i in store.lineage.all() if i.fitness is not None]
    if not scored:
        raise EvoMergeError(f"no scored individual in {store.root}: nothing to export")
    return max(scored, key=lambda i: (i.fitness, -i.id)), "highest fitness"


def mergekit_config(ind: Individual, parents: list[Individual], population: Population,
                    dtype: str) -> tuple[str | None, str | None]:
    """The mergekit YAML that redoes the merge that made ``ind``, and a note; or (None, why not).

    The individual's operator says whether and how it exports (``Operator.mergekit``); only
    full-weight populations export, since mergekit merges full models."""
    if population.spec.kind == "lora":
        return None, "no mergekit config: LoRA population (mergekit merges full models)"

    def refs(member: str | None) -> str:
        if member is not None and member not in population.member_dirs:
            raise LookupError(member)
        return population.external(member)

    form = operator(ind.operator).mergekit(ind, parents, refs, dtype)
    if form.config is None:
        return None, form.note
    cfg = {**form.config, "dtype": dtype}
    head = (f"# mergekit config of evo-merge individual {ind.id} ({ind.operator}, {ind.method}) "
            f"written by `evo-merge export`\n")
    head += f"# {form.note}\n" if form.note else "# redoes the merge that made the exported weights\n"
    return head + yaml.safe_dump(cfg, sort_keys=False), form.note


# -- writers ------------------------------------------------------------------------------------
def _write_full_model(population: Population, genome: Genome, out: Path, trust_remote_code: bool) -> None:
    """base + delta, in the genome's dtype, saved in the base checkpoint's dtype."""
    from evo_merge.model_host import ModelHost

    host = ModelHost(population.base_dir, genome.layout, device="cpu", dtype=_dtype_name(genome.layout.dtype),
                     trust_remote_code=trust_remote_code)
    host.install(genome)
    host.export_model(out, dtype=_checkpoint_dtype(population.base_dir, genome.layout.dtype))


def _write_merged_lora(population: Population, genome: Genome, out: Path, trust_remote_code: bool) -> None:
    """The adapter merged into the base in float32, saved in the base checkpoint's dtype."""
    from evo_merge.model_host import ModelHost

    host = ModelHost(population.base_dir, genome.layout, adapter_dir=_adapter_dir(population), device="cpu",
                     dtype="float32", trust_remote_code=trust_remote_code, basis=genome.basis)
    host.install(genome)
    host.export_model(out, merge_adapter=True, dtype=_checkpoint_dtype(population.base_dir, torch.float32))


def _write_adapter(population: Population, genome: Genome, out: Path, trust_remote_code: bool) -> None:
    """A PEFT adapter directory: the member adapters' config, the genome's tensors, the base tokenizer."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from evo_merge.model_host import load_tokenizer

    member = _adapter_dir(population)
    keys: set[str] = set()
    for f in sorted(member.glob("adapter_model*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            keys.update(fh.keys())
    tensors = genome.tensors()
    if genome.basis is not None:  # exact LoRA: an adapter of the summed rank, scaling 1
        tensors = genome.basis.peft_tensors(tensors)
    if keys != set(tensors):
        diff = sorted(keys ^ set(tensors))[:3]
        raise EvoMergeError(f"the individual's LoRA tensors do not match the adapter in {member} (e.g. {diff})")
    try:
        adapter_cfg = json.loads((member / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvoMergeError(f"cannot read {member / 'adapter_config.json'}: {exc}") from None
    # the base as the spec named it: a Hub id (and its commit), or the local directory
    adapter_cfg["base_model_name_or_path"] = population.external(None, with_revision=False)
    if genome.basis is not None:
        adapter_cfg.update(r=genome.basis.rank, lora_alpha=genome.basis.rank, use_rslora=False)
    if population.origins[None].get("hub") and population.origins[None].get("revision"):
        adapter_cfg["revision"] = population.origins[None]["revision"]
    (out / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2, sort_keys=True) + "\n")
    # own memory per tensor: safetensors refuses tensors that share a buffer
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()},
              str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    load_tokenizer(population.base_dir, trust_remote_code).save_pretrained(out)


# -- helpers ------------------------------------------------------------------------------------
def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EvoMergeError(f"output directory {out} already exists and is not empty")


def _run_config(store: RunStore) -> dict:
    try:
        cfg = store.config()
    except (OSError, EvoMergeError):
        cfg = None
    if cfg is None:  # older stores or a config only on disk
        path = store.root / "config.yaml"
        if not path.is_file():
            raise EvoMergeError(f"not a run directory (no config.yaml): {store.root}")
        try:
            cfg = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise EvoMergeError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise EvoMergeError(f"{store.root}: the run's config is not a mapping")
    return cfg


def _adapter_dir(population: Population) -> Path:
    """The adapter directory whose config the population's workers built the model with."""
    return next(iter(population.member_dirs.values()))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _checkpoint_dtype(base_dir: Path, default: torch.dtype) -> torch.dtype:
    """The dtype the base model is stored in (config.json), else ``default``."""
    try:
        cfg = json.loads((Path(base_dir) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return default
    return _DTYPES.get(cfg.get("dtype") or cfg.get("torch_dtype") or "", default)


def _row(ind: Individual) -> dict[str, Any]:
    row = asdict(ind)
    row.pop("created_at", None)
    return row
