"""Population specs: a base model and its members (PEFT LoRA adapters or full fine-tunes).

A spec may name a deterministic ``build`` script that makes the models on first use; they
are cached under ``$EVO_MERGE_CACHE`` (default ``~/.cache/evo-merge``) keyed by the script's
content and seed, and built in a temporary folder that is renamed into place when complete.

A spec with a record beside it (``NAME.lock.json``, written into every run directory when the
run starts: ``population_record``) is resolved from the record instead: each model from the
Hub id and commit or the local directory it had, checked against its recorded digest
(``model_identity``), and never built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from evo_merge.yamlfile import load_model
from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.model_identity import model_digest
from evo_merge.population_build import cache_root, ensure_built  # noqa: F401 - cache_root: the public name
from evo_merge.weights_io import load_safetensors_dir


class BuildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    script: Path
    seed: int = 0


class MemberSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str
    path: str


class PopulationSpec(BaseModel):
    """A population: one base model and its same-architecture members."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str
    kind: Literal["lora", "full"]
    base_model: str
    members: list[MemberSpec] = Field(min_length=2)
    build: BuildSpec | None = None
    revision: str | None = None


class Population:
    """A resolved population: local paths of the base and members, and the members' genomes."""

    def __init__(self, spec: PopulationSpec, base_dir: Path, member_dirs: dict[str, Path],
                 origins: dict[str | None, dict] | None = None):
        self.spec = spec
        self.base_dir = base_dir
        self.member_dirs = member_dirs
        # where each model came from (base: key None): {"ref": as written, "hub": id or None,
        # "revision": the Hub commit or None, "path": the local directory or None}
        self.origins = origins or {key: _origin(ref, ref, path, Path.cwd(), spec.revision)
                                   for key, ref, path in self._refs()}

    def _refs(self):
        yield None, self.spec.base_model, self.base_dir
        for m in self.spec.members:
            yield m.name, m.path, self.member_dirs[m.name]

    def external(self, member: str | None = None, with_revision: bool = True) -> str:
        """How to name a model outside this machine: its Hub id as the spec wrote it (``id@commit``
        with ``with_revision`` when the revision is known), else its absolute local path."""
        origin = self.origins[member]
        if origin.get("hub"):
            rev = origin.get("revision")
            return f"{origin['hub']}@{rev}" if rev and with_revision else origin["hub"]
        return str(Path(origin.get("path") or (self.base_dir if member is None else self.member_dirs[member])))

    def genome_kind(self, lora_mode: str = "exact") -> str:
        if self.spec.kind == "full":
            return "delta"
        return "lora_exact" if lora_mode == "exact" else "lora"

    def load_genomes(self, lora_mode: str = "exact", max_rank: int | None = None) -> dict[str, Genome]:
        """Each member as a genome: adapter tensors (see ``lora_members.py`` for the modes), or
        fine-tuned minus base weights."""
        if self.spec.kind == "lora":
            from evo_merge.lora_members import load_lora_members

            return load_lora_members(self.member_dirs, lora_mode, max_rank)
        return self._load_deltas()

    def check_tokenizers(self, base_tokenizer, trust_remote_code: bool = False) -> None:
        """Members that ship a tokenizer must ship the base's: same vocabulary, same special tokens."""
        from transformers import AutoTokenizer

        want_vocab = base_tokenizer.get_vocab()
        want_special = base_tokenizer.special_tokens_map
        for name, path in self.member_dirs.items():
            if not any((path / f).is_file() for f in TOKENIZER_FILES):
                continue
            try:
                tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            except (OSError, ValueError) as exc:
                raise EvoMergeError(f"member {name}: tokenizer in {path} cannot be loaded: "
                                    f"{str(exc).splitlines()[0][:160]}") from None
            vocab = tok.get_vocab()
            if vocab != want_vocab:
                diff = sorted(set(vocab.items()) ^ set(want_vocab.items()))[:2]
                raise EvoMergeError(f"member {name}: tokenizer differs from the base's ({len(vocab)} tokens vs "
                                    f"{len(want_vocab)}; e.g. {diff}): members must share the base's tokenizer")
            if tok.special_tokens_map != want_special:
                raise EvoMergeError(f"member {name}: special tokens {tok.special_tokens_map} differ from the "
                                    f"base's {want_special}")

    def _load_deltas(self) -> dict[str, Genome]:
        base = load_safetensors_dir(self.base_dir)
        members = {name: load_safetensors_dir(path) for name, path in self.member_dirs.items()}
        for name, tensors in members.items():
            if set(tensors) != set(base):
                diff = sorted(set(tensors) ^ set(base))[:3]
                raise EvoMergeError(f"member {name}: architecture differs from the base (tensors {diff})")
            for key, t in tensors.items():
                if t.shape != base[key].shape:
                    raise EvoMergeError(f"member {name}: tensor {key} has shape {list(t.shape)}, "
                                        f"base has {list(base[key].shape)}")
        changed = sorted(k for k, b in base.items()
                         if b.is_floating_point() and any(not torch.equal(m[k], b) for m in members.values()))
        if not changed:
            raise EvoMergeError("no member differs from the base model: nothing to evolve")
        return {name: Genome.from_tensors({k: m[k] - base[k] for k in changed}, "delta", what=f"member {name}")
                for name, m in members.items()}


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_population(spec_path: Path) -> Population:
    """Read a population spec, build its models if it has a builder, and resolve every path; a spec
    with a record beside it (a run's copy) is resolved from the record and checked against it."""
    spec_path = Path(spec_path)
    if record_path(spec_path).is_file():
        return _load_recorded(record_path(spec_path))
    spec: PopulationSpec = load_model(PopulationSpec, spec_path, "population spec")
    here = spec_path.resolve().parent
    build_dir = ensure_built(spec, here) if spec.build else None
    origins: dict[str | None, dict] = {}

    def resolve(key: str | None, written: str, what: str) -> Path:
        ref = written
        if "{build_dir}" in ref:
            if build_dir is None:
                raise EvoMergeError(f"{spec_path}: {what} uses {{build_dir}} but the spec has no build section")
            ref = ref.replace("{build_dir}", str(build_dir))
        path = resolve_model_path(ref, here, what, spec.revision)
        origins[key] = _origin(written, ref, path, here, spec.revision)
        return path

    base_dir = resolve(None, spec.base_model, "base_model")
    names = [m.name for m in spec.members]
    if len(set(names)) != len(names):
        raise EvoMergeError(f"{spec_path}: member names must be unique")
    members = {m.name: resolve(m.name, m.path, f"member {m.name}") for m in spec.members}
    return Population(spec, base_dir, members, origins)


def record_path(spec_path: Path) -> Path:
    return Path(spec_path).with_suffix(".lock.json")


def population_record(population: Population) -> dict:
    """The identity of the base and each member (``model_identity``): what a run resolves them from."""
    def entry(key: str | None, path: Path) -> dict:
        return {**population.origins[key], "path": str(Path(path).resolve()), "digest": model_digest(path)}

    spec = population.spec
    return {"name": spec.name, "kind": spec.kind, "revision": spec.revision,
            "base": entry(None, population.base_dir),
            "members": {name: entry(name, path) for name, path in population.member_dirs.items()}}


def _load_recorded(path: Path) -> Population:
    try:
        rec = json.loads(path.read_text())
        spec = PopulationSpec(name=rec["name"], kind=rec["kind"], base_model=rec["base"]["ref"], revision=rec["revision"],
                              members=[MemberSpec(name=n, path=e["ref"]) for n, e in rec["members"].items()])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvoMergeError(f"{path}: unreadable record of the run's models ({type(exc).__name__}: {exc})") from None
    entries = {None: rec["base"], **rec["members"]}
    dirs = {key: _recorded_dir(e, "base model" if key is None else f"member {key}") for key, e in entries.items()}
    origins = {key: {**e, "path": None if e.get("hub") else str(dirs[key])} for key, e in entries.items()}
    return Population(spec, dirs.pop(None), dirs, origins)


def _recorded_dir(entry: dict, what: str) -> Path:
    """The model a run recorded, found where the record says; refused unless its digest matches."""
    if entry.get("hub"):
        path = hub_snapshot(entry["hub"], entry.get("revision"), what)
    else:
        path = Path(entry["path"])
        if not path.is_dir():
            raise EvoMergeError(f"{what}: directory not found: {path} (where it was when the run started)")
    digest = model_digest(path)
    if digest != entry.get("digest"):
        raise EvoMergeError(f"{what}: {path} is not the model the run started with (weight files changed: digest "
                            f"{str(entry.get('digest'))[:12]} recorded, {digest[:12]} now); restore it")
    return path


def _origin(written: str, ref: str, path: Path, here: Path, revision: str | None) -> dict:
    local = Path(ref) if Path(ref).is_absolute() else here / ref
    if local.is_dir() or ref.startswith((".", "/")) or ref.count("/") != 1:
        return {"ref": written, "hub": None, "revision": None, "path": str(Path(path).resolve())}
    commit = Path(path).name if Path(path).parent.name == "snapshots" else revision
    return {"ref": written, "hub": ref, "revision": commit, "path": None}


def resolve_model_path(ref: str, here: Path, what: str, revision: str | None) -> Path:
    """A local directory (absolute or relative to the spec) or a Hugging Face Hub id."""
    local = Path(ref) if Path(ref).is_absolute() else here / ref
    if local.is_dir():
        return local
    if ref.startswith((".", "/")) or ref.count("/") != 1:
        raise EvoMergeError(f"{what}: directory not found: {local}")
    return hub_snapshot(ref, revision, what)


def hub_snapshot(ref: str, revision: str | None, what: str) -> Path:
    """The local snapshot of a Hugging Face Hub model (downloaded when not cached)."""
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(ref, revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]))
    except Exception as exc:  # hub errors vary: offline, gated, missing
        raise EvoMergeError(f"{what}: cannot fetch {ref!r} from the Hugging Face Hub: {type(exc).__name__}") from None
