"""The evo-merge CLI with a kill point, for the kill/resume tests.

``python killpoints.py POINT K COUNT_FILE evo-merge-args...`` runs the CLI in this process and
SIGKILLs it at the K-th time the run reaches POINT (K = 0: never; the count of times each
point was reached is written to COUNT_FILE at exit instead). The points are events, not
moments, so where a kill lands does not depend on how fast the machine is:

- ``commit``: inside a lineage-database transaction, before it commits (the write is lost);
- ``weights``: after a weight file is written, before the database records it (the
  members as the run starts; each checkpoint's survivors as their generation closes, before
  the checkpoint commits; the report's uniform merge).

Old weight files are deleted only after a checkpoint has committed; a ``commit`` kill point
right after that commit (before the deletion) is the one in between.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from evo_merge.store.lineage import LineageDB
from evo_merge.store.weights import WeightStore

POINTS = ("commit", "weights")


def install(point: str, k: int, count_file: Path) -> None:
    counts = dict.fromkeys(POINTS, 0)

    def reached(name: str) -> None:
        counts[name] += 1
        if name == point and counts[name] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    transaction, save = LineageDB.transaction, WeightStore.save

    @contextmanager
    def counted_transaction(self):
        with transaction(self) as conn:
            yield conn
            reached("commit")

    def counted_save(self, genome, *args, **kwargs):
        digest = save(self, genome, *args, **kwargs)
        reached("weights")
        return digest

    LineageDB.transaction, WeightStore.save = counted_transaction, counted_save
    atexit.register(lambda: count_file.write_text(json.dumps(counts)))


if __name__ == "__main__":
    point, k, count_file, *args = sys.argv[1:]
    install(point, int(k), Path(count_file))
    from evo_merge.cli.app import main

    sys.argv = ["evo-merge", *args]
    main()
