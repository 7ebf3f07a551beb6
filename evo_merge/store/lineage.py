"""SQLite lineage database: every individual, its parents, operator, coefficients, seeds and scores."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from evo_merge.operators.recipe import Recipe
from evo_merge.store.search_log import SearchLog

SCHEMA = """
CREATE TABLE IF NOT EXISTS individuals (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    operator TEXT NOT NULL,
    name TEXT,
    parents TEXT NOT NULL,
    method TEXT,
    coefficients TEXT,
    params TEXT,
    seed INTEGER,
    weights TEXT NOT NULL,
    velocity TEXT,
    personal_best INTEGER,
    fitness REAL,
    task_scores TEXT,
    test_score REAL,
    test_task_scores TEXT,
    build_seconds REAL,
    eval_seconds REAL,
    worker TEXT,
    node TEXT,
    created_at REAL NOT NULL,
    fitness_rows INTEGER,
    partial INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS population (
    generation INTEGER NOT NULL,
    id INTEGER NOT NULL REFERENCES individuals(id),
    PRIMARY KEY (generation, id)
);
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY,
    best REAL, mean REAL, std REAL,
    offspring INTEGER, seconds REAL,
    created_at REAL NOT NULL,
    events TEXT
);
CREATE TABLE IF NOT EXISTS results (
    name TEXT PRIMARY KEY,
    fitness REAL, test_score REAL, detail TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS example_scores (
    id INTEGER PRIMARY KEY REFERENCES individuals(id),
    scores BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS searches (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    parents TEXT NOT NULL,
    settings TEXT NOT NULL,
    seed INTEGER NOT NULL,
    rng_state TEXT,
    status TEXT NOT NULL,
    best_candidate INTEGER,
    result INTEGER REFERENCES individuals(id),
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS search_candidates (
    search INTEGER NOT NULL REFERENCES searches(id),
    idx INTEGER NOT NULL,
    value TEXT NOT NULL,
    told INTEGER,
    objective REAL,
    fitness REAL,
    loss REAL,
    l1 REAL,
    task_scores TEXT,
    seconds REAL,
    worker TEXT,
    rows INTEGER,
    PRIMARY KEY (search, idx)
);
"""

_JSON_FIELDS = ("parents", "coefficients", "params", "task_scores", "test_task_scores")


@dataclass(kw_only=True)
class Individual(Recipe):
    """One row of the lineage: the recipe that made an individual (``Recipe``'s fields) and
    what came of it."""

    id: int
    generation: int
    weights: str
    name: str | None = None
    velocity: str | None = None
    personal_best: int | None = None
    fitness: float | None = None
    task_scores: dict[str, float] | None = None
    test_score: float | None = None
    test_task_scores: dict[str, float] | None = None
    build_seconds: float | None = None
    eval_seconds: float | None = None
    worker: str | None = None
    node: str | None = None
    created_at: float = 0.0
    fitness_rows: int | None = None  # racing: fitness rows this score rests on (None: all of them)
    partial: bool = False            # racing stopped it before the whole fitness set


class LineageDB(SearchLog):
    """Reads and writes the lineage tables; every write is one transaction."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        if readonly:  # readers (status, show, export...) never write to a run's database
            self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        if not readonly:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
            columns = {r["name"] for r in self.conn.execute("PRAGMA table_info(search_candidates)")}
            if "rows" not in columns:  # a store made before racing covered search candidates
                self.conn.execute("ALTER TABLE search_candidates ADD COLUMN rows INTEGER")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def next_id(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM individuals").fetchone()
        return int(row[0])

    def add(self, ind: Individual, example_scores: np.ndarray | None = None) -> None:
        """Insert an individual (and its per-example fitness-split scores) in one transaction."""
        ind.created_at = ind.created_at or time.time()
        row = {k: (json.dumps(v) if k in _JSON_FIELDS and v is not None else v) for k, v in vars(ind).items()}
        cols = ", ".join(row)
        with self.transaction() as c:
            c.execute(f"INSERT INTO individuals ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
            if example_scores is not None:
                c.execute("INSERT INTO example_scores (id, scores) VALUES (?, ?)",
                          (ind.id, np.asarray(example_scores, dtype="<f4").tobytes()))

    def example_scores(self) -> dict[int, np.ndarray]:
        """Per-example fitness-split scores of every individual that has them."""
        rows = self.conn.execute("SELECT id, scores FROM example_scores")
        return {r[0]: np.frombuffer(r[1], dtype="<f4").astype(float) for r in rows}

    def set_test(self, ind_id: int, score: float, task_scores: dict[str, float]) -> None:
        with self.transaction() as c:
            c.execute("UPDATE individuals SET test_score = ?, test_task_scores = ? WHERE id = ?",
                      (score, json.dumps(task_scores), ind_id))

    def get(self, ind_id: int) -> Individual | None:
        row = self.conn.execute("SELECT * FROM individuals WHERE id = ?", (ind_id,)).fetchone()
        return _to_individual(row) if row else None

    def all(self) -> list[Individual]:
        return [_to_individual(r) for r in self.conn.execute("SELECT * FROM individuals ORDER BY id")]

    def ancestors(self, ind_id: int) -> list[Individual]:
        """The individual and all its ancestors, breadth first, each once."""
        out, seen, queue = [], set(), [ind_id]
        while queue:
            cur = queue.pop(0)
            if cur in seen:
                continue
            seen.add(cur)
            ind = self.get(cur)
            if ind is None:
                continue
            out.append(ind)
            queue.extend(ind.parents)
        return out

    def set_population(self, generation: int, ids: list[int], stats: dict[str, float],
                       checkpoint: dict[str, Any] | None = None, events: list[dict] | None = None) -> None:
        """Close a generation; ``checkpoint`` (the engine's state) and the generation's ``events``
        (e.g. what the stall rule did) are saved in the same transaction."""
        with self.transaction() as c:
            if checkpoint is not None:
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('checkpoint', ?)",
                          (json.dumps({**checkpoint, "last_id": self.next_id() - 1}),))
            c.executemany("INSERT INTO population (generation, id) VALUES (?, ?)", [(generation, i) for i in ids])
            c.execute("INSERT INTO generations (generation, best, mean, std, offspring, seconds, created_at, events) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (generation, stats["best"], stats["mean"], stats["std"], stats["offspring"],
                       stats["seconds"], time.time(), json.dumps(events) if events else None))

    def population(self, generation: int | None = None) -> list[int]:
        if generation is None:
            generation = self.last_generation()
        rows = self.conn.execute("SELECT id FROM population WHERE generation = ? ORDER BY id", (generation,))
        return [r[0] for r in rows]

    def last_generation(self) -> int | None:
        row = self.conn.execute("SELECT MAX(generation) FROM generations").fetchone()
        return row[0]

    def generations(self) -> list[dict[str, Any]]:
        rows = [dict(r) for r in self.conn.execute("SELECT * FROM generations ORDER BY generation")]
        for r in rows:
            r["events"] = json.loads(r["events"]) if r.get("events") else []
        return rows

    def set_result(self, name: str, fitness: float | None, test_score: float | None, detail: dict) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO results (name, fitness, test_score, detail) VALUES (?, ?, ?, ?)",
                      (name, fitness, test_score, json.dumps(detail)))

    def results(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM results").fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    def rollback_to(self, checkpoint: dict[str, Any] | None) -> None:
        """Forget everything recorded after ``checkpoint`` (all of it when None), in one
        transaction; searches keep their candidate logs so they resume by replay."""
        last_id = checkpoint["last_id"] if checkpoint else -1
        generation = checkpoint["generation"] if checkpoint else -1
        with self.transaction() as c:
            c.execute("DELETE FROM population WHERE generation > ?", (generation,))
            c.execute("DELETE FROM generations WHERE generation > ?", (generation,))
            c.execute("DELETE FROM results")
            c.execute("UPDATE searches SET status = 'running', best_candidate = NULL, result = NULL "
                      "WHERE result > ?", (last_id,))
            c.execute("DELETE FROM example_scores WHERE id > ?", (last_id,))
            c.execute("DELETE FROM individuals WHERE id > ?", (last_id,))
            c.execute("DELETE FROM meta WHERE key = 'status'")
            if checkpoint is None:
                c.execute("DELETE FROM meta WHERE key = 'checkpoint'")

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default


def _to_individual(row: sqlite3.Row) -> Individual:
    data = {k: row[k] for k in row.keys()}
    for k in _JSON_FIELDS:
        if data[k] is not None:
            data[k] = json.loads(data[k])
    return Individual(**data)
