"""Building a population whose spec names a ``build`` script: run once into the cache.

The models are cached under ``$EVO_MERGE_CACHE`` (default ``~/.cache/evo-merge``) keyed by the
script's content and seed, and built in a temporary folder renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from evo_merge.errors import EvoMergeError


def cache_root() -> Path:
    return Path(os.environ.get("EVO_MERGE_CACHE", Path.home() / ".cache" / "evo-merge"))


def ensure_built(spec, here: Path) -> Path:
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
