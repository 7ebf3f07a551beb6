"""Plugins: Python modules or files that register merge methods, operators or metrics.

A run config's ``plugins`` list names them (a module importable from the current
directory, or a ``.py`` file, relative to the config file); they are imported before
anything is validated, in the driver and in every worker, so a registered name is as good
as a built-in one. Each import happens once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

from evo_merge.errors import EvoMergeError


def load_plugins(refs: Iterable[str]) -> None:
    for ref in refs:
        load_plugin(str(ref))


def load_plugin(ref: str) -> None:
    try:
        if ref.endswith(".py"):
            path = Path(ref)
            if not path.is_file():
                raise EvoMergeError(f"plugin file not found: {path}")
            name = f"evo_merge_plugin_{path.stem}_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
            if name in sys.modules:
                return
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            importlib.import_module(ref)
    except EvoMergeError:
        raise
    except ValueError as exc:  # a registry refusing a duplicate name
        raise EvoMergeError(f"plugin {ref}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any import-time failure of user code is bad input
        raise EvoMergeError(f"plugin {ref} failed to import: {type(exc).__name__}: {exc}") from None
