"""A run directory: resolved config, content-addressed weights and the lineage database.

A process that writes to a run directory holds an exclusive lock on ``.lock`` in it, so a
second process (another ``run``/``resume``/``gc`` on the same directory) is refused
instead of interleaving writes. Readers (``status``, ``lineage``, ``export`` ...) need no
lock: SQLite's WAL mode gives them a consistent snapshot.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from pathlib import Path

import yaml

from evo_merge.errors import EvoMergeError
from evo_merge.store.lineage import LineageDB
from evo_merge.store.weights import WeightStore
from evo_merge.weights_io import atomic_write_text

CONFIG_FILE = "config.yaml"
DB_FILE = "lineage.sqlite"
LOCK_FILE = ".lock"


class RunLock:
    """An exclusive advisory lock on a run directory, held until ``release``."""

    def __init__(self, root: Path):
        path = Path(root) / LOCK_FILE
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise EvoMergeError(f"run directory {root} is in use by another evo-merge process (pid {holder})") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class RunStore:
    """Opens (or creates) a run directory and gives access to its weights and lineage."""

    def __init__(self, root: Path, lineage: LineageDB, lock: RunLock | None = None):
        self.root = Path(root)
        self.lineage = lineage
        self.weights = WeightStore(self.root / "weights")
        self.weights.fallback = self._rebuild
        self.lock = lock

    def _rebuild(self, digest: str):
        """A genome the run did not write (or collected), made again from its recipe on the CPU."""
        from evo_merge.store.rebuild import Rebuilder

        return Rebuilder(self).by_hash(digest)

    @classmethod
    def create(cls, root: Path, resolved_config: dict, kind: str = "evolution") -> "RunStore":
        """Make a new run directory; an existing non-empty one is refused, never touched."""
        root = Path(root)
        if root.exists() and any(root.iterdir()):
            raise EvoMergeError(f"run directory {root} already exists and is not empty; choose another --out")
        root.mkdir(parents=True, exist_ok=True)
        lock = RunLock(root)
        lineage = LineageDB(root / DB_FILE)
        with lineage.transaction() as c:  # the config and the run's kind: the first record, in one go
            c.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                          [("config", json.dumps(resolved_config)), ("kind", json.dumps(kind))])
        atomic_write_text(root / CONFIG_FILE, yaml.safe_dump(resolved_config, sort_keys=False))
        return cls(root, lineage, lock)

    @classmethod
    def open(cls, root: Path, lock: bool = False) -> "RunStore":
        """Open an existing run directory; ``lock=True`` for a process that will write to it."""
        root = Path(root)
        db = root / DB_FILE
        if not db.is_file():
            raise EvoMergeError(f"not a run directory (no {DB_FILE}): {root}")
        try:
            _check_lineage(db)  # read-only: a foreign SQLite file is refused, never touched
        except sqlite3.DatabaseError as exc:
            raise EvoMergeError(f"lineage database unreadable: {db} ({exc})") from None
        held = RunLock(root) if lock else None
        try:
            lineage = LineageDB(db, readonly=not lock)
        except sqlite3.DatabaseError as exc:
            if held:
                held.release()
            raise EvoMergeError(f"lineage database unreadable: {db} ({exc})") from None
        except BaseException:
            if held:
                held.release()
            raise
        return cls(root, lineage, held)

    def config(self) -> dict:
        """The resolved config the run started with (kept in the database; config.yaml is a copy)."""
        stored = self.lineage.meta("config")
        if stored is None:
            raise EvoMergeError(f"{self.root}: the run's config was never recorded; start it again")
        return stored

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.lineage.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


RUN_TABLES = {"individuals", "meta", "population"}


def _check_lineage(db: Path) -> None:
    """Raise sqlite3.DatabaseError unless ``db`` is an intact evo-merge lineage database."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(check)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not RUN_TABLES <= tables:
            raise sqlite3.DatabaseError("not an evo-merge lineage database")
        if conn.execute("SELECT 1 FROM meta WHERE key = 'config'").fetchone() is None:
            raise sqlite3.DatabaseError("the run's config was never recorded: it was stopped as it started; "
                                        "remove the directory and start it again")
    finally:
        conn.close()


def weight_store_usage(store: RunStore) -> dict:
    """The run's weight store now, and the most it may hold: ``members + 2 x population``
    model copies (the members, the last checkpoint's population and, while a generation
    closes, the next one's). ``population`` is the largest closing population recorded (the
    configured ``population_size`` while none is)."""
    db = store.lineage
    members = db.conn.execute("SELECT COUNT(*) FROM individuals WHERE operator = 'member'").fetchone()[0]
    largest = db.conn.execute("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM population GROUP BY generation)"
                              ).fetchone()[0]
    configured = ((db.meta("config") or {}).get("evolution") or {}).get("population_size") or 0
    population = max(int(largest or 0), int(configured))
    files = store.weights.files()
    sizes = [p.stat().st_size for p in files if p.is_file()]
    member_files = [store.weights.path(r[0]) for r in
                    db.conn.execute("SELECT weights FROM individuals WHERE operator = 'member'")]
    member_sizes = [p.stat().st_size for p in member_files if p.is_file()]
    copy = max(member_sizes or sizes or [0])  # one model copy: a member's file
    return {"files": len(files), "bytes": sum(sizes), "copy_bytes": copy, "members": int(members),
            "population": population, "bound_copies": int(members) + 2 * population}


def weight_store_line(store: RunStore) -> str:
    """One line for ``evo-merge status``: the weight store's size now and its bound."""
    u = weight_store_usage(store)
    mib = u["bytes"] / 2**20
    bound_mib = u["bound_copies"] * u["copy_bytes"] / 2**20
    return (f"weight store: {u['files']} file(s), {mib:.1f} MiB; bound members + 2 x population = "
            f"{u['members']} + 2 x {u['population']} = {u['bound_copies']} model copies "
            f"(~{bound_mib:.1f} MiB)")
