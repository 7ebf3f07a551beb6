"""A directory that appears whole or not at all: ``export`` and ``evo-merge merge`` outputs.

The content is written into a temporary directory beside the target (named with the
writer's process id, so that one left by a killed process is removed by the next writer),
then renamed onto the target, which must be absent or empty. A failure leaves nothing.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, TypeVar

from evo_merge.errors import EvoMergeError

T = TypeVar("T")


def atomic_dir(out: Path, build: Callable[[Path], T]) -> T:
    """Have ``build`` fill a temporary directory beside ``out``, then rename it to ``out``;
    returns what ``build`` returns."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    tmp = out.parent / f".{out.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()  # (not mkdtemp: the result should get the usual permissions, not 0700)
    try:
        result = build(tmp)
        try:
            if out.exists():
                out.rmdir()  # empty (callers check); a file written there meanwhile makes this fail
            os.replace(tmp, out)
        except OSError as exc:
            raise EvoMergeError(f"cannot move the output into {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def remove_stale(out: Path) -> None:
    """Remove the temporary directories for ``out`` whose process died (killed mid-write)."""
    for tmp in out.parent.glob(f".{glob.escape(out.name)}-*-*.tmp"):
        pid = tmp.name[len(out.name) + 2:].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's
