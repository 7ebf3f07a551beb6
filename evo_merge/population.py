"""Population specs: a base model and its members (PEFT LoRA adapters or full fine-tunes).

A spec may name a deterministic ``build`` script that makes the models on first use; they
are cached under ``$EVO_MERGE_CACHE`` (default ``~/.cache/evo-merge``) keyed by the script's
content and seed, and built in a temporary folder that is renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from evo_merge.yamlfile import load_model
from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
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

    def __init__(self, spec: PopulationSpec, base_dir: Path, member_dirs: dict[str, Path]):
        self.spec = spec
        self.base_dir = base_dir
        self.member_dirs = member_dirs

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
    """Read a population spec, build its models if it has a builder, and resolve every path."""
    spec_path = Path(spec_path)
    spec: PopulationSpec = load_model(PopulationSpec, spec_path, "population spec")
    here = spec_path.resolve().parent
    build_dir = _ensure_built(spec, here) if spec.build else None

    def resolve(ref: str, what: str) -> Path:
        if "{build_dir}" in ref:
            if build_dir is None:
                raise EvoMergeError(f"{spec_path}: {what} uses {{build_dir}} but the spec has no build section")
            ref = ref.replace("{build_dir}", str(build_dir))
        return resolve_model_path(ref, here, what, spec.revision)

    base_dir = resolve(spec.base_model, "base_model")
    names = [m.name for m in spec.members]
    if len(set(names)) != len(names):
        raise EvoMergeError(f"{spec_path}: member names must be unique")
    members = {m.name: resolve(m.path, f"member {m.name}") for m in spec.members}
    return Population(spec, base_dir, members)


def resolve_model_path(ref: str, here: Path, what: str, revision: str | None) -> Path:
    """A local directory (absolute or relative to the spec) or a Hugging Face Hub id."""
    local = Path(ref) if Path(ref).is_absolute() else here / ref
    if local.is_dir():
        return local
    if ref.startswith((".", "/")) or ref.count("/") != 1:
        raise EvoMergeError(f"{what}: directory not found: {local}")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(ref, revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]))
    except Exception as exc:  # hub errors vary: offline, gated, missing
        raise EvoMergeError(f"{what}: cannot fetch {ref!r} from the Hugging Face Hub: {type(exc).__name__}") from None


def cache_root() -> Path:
    return Path(os.environ.get("EVO_MERGE_CACHE", Path.home() / ".cache" / "evo-merge"))


def _ensure_built(spec: PopulationSpec, here: Path) -> Path:
    """Run the spec's builder once into the cache; later calls return the cached folder."""
    script = here / spec.build.script
    if not script.is_file():
        raise EvoMergeError(f"population {spec.name}: build script not found: {script}")
    digest = _source_digest(script)
    target = cache_root() / f"{script.stem}-seed{spec.build.seed}-{digest}"
    if (target / "manifest.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _import_script(script).build(tmp, seed=spec.build.seed)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _source_digest(script: Path) -> str:
    """Hash of the build script, the Python files beside it (its helpers) and the versions of torch
    and transformers (which set the random initialisation), so any change rebuilds."""
    import transformers

    h = hashlib.sha256(f"torch {torch.__version__}; transformers {transformers.__version__}".encode())
    for f in sorted(script.parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def _import_script(script: Path):
    mod_name = f"_evo_merge_builder_{script.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, script)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
    sys.path.insert(0, str(script.parent))
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(script.parent))
    if not hasattr(module, "build"):
        raise EvoMergeError(f"build script {script} defines no build(out_dir, seed) function")
    return module
