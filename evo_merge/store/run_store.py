"""A run directory: resolved config, content-addressed weights and the lineage database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from evo_merge.errors import EvoMergeError
from evo_merge.store.lineage import LineageDB
from evo_merge.store.weights import WeightStore
from evo_merge.weights_io import atomic_write_text

CONFIG_FILE = "config.yaml"
DB_FILE = "lineage.sqlite"


class RunStore:
    """Opens (or creates) a run directory and gives access to its weights and lineage."""

    def __init__(self, root: Path, lineage: LineageDB):
        self.root = Path(root)
        self.lineage = lineage
        self.weights = WeightStore(self.root / "weights")

    @classmethod
    def create(cls, root: Path, resolved_config: dict) -> "RunStore":
        """Make a new run directory; an existing non-empty one is refused, never touched."""
        root = Path(root)
        if root.exists() and any(root.iterdir()):
            raise EvoMergeError(f"run directory {root} already exists and is not empty; choose another --out")
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / CONFIG_FILE, yaml.safe_dump(resolved_config, sort_keys=False))
        return cls(root, LineageDB(root / DB_FILE))

    @classmethod
    def open(cls, root: Path) -> "RunStore":
        """Open an existing run directory read-write."""
        root = Path(root)
        db = root / DB_FILE
        if not db.is_file():
            raise EvoMergeError(f"not a run directory (no {DB_FILE}): {root}")
        try:
            lineage = LineageDB(db)
            lineage.conn.execute("SELECT COUNT(*) FROM individuals").fetchone()
        except sqlite3.DatabaseError as exc:
            raise EvoMergeError(f"lineage database unreadable: {db} ({exc})") from None
        return cls(root, lineage)

    def config(self) -> dict:
        return yaml.safe_load((self.root / CONFIG_FILE).read_text())

    def close(self) -> None:
        self.lineage.close()
