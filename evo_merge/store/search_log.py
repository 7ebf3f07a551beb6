"""Lineage tables of coefficient searches: each search, and every candidate it asked and was told.

The candidate rows are the optimizer's state: replaying the tells in their recorded order
rebuilds it (see ``search/coefficient_search.py``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any


class SearchLog:
    """Coefficient searches and every candidate they asked and were told (mixed into LineageDB)."""

    conn: sqlite3.Connection

    def add_search(self, generation: int, parents: list[int], settings: dict, seed: int, rng_state: Any) -> int:
        with self.transaction() as c:  # type: ignore[attr-defined]
            cur = c.execute("INSERT INTO searches (generation, parents, settings, seed, rng_state, status, created_at) "
                            "VALUES (?, ?, ?, ?, ?, 'running', ?)",
                            (generation, json.dumps(parents), json.dumps(settings), seed, json.dumps(rng_state),
                             time.time()))
            return int(cur.lastrowid)

    def searches(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM searches ORDER BY id").fetchall()
        return [{**dict(r), "parents": json.loads(r["parents"]), "settings": json.loads(r["settings"]),
                 "rng_state": json.loads(r["rng_state"]) if r["rng_state"] else None} for r in rows]

    def open_search(self, generation: int) -> dict[str, Any] | None:
        """The unfinished search of a generation, if one was interrupted."""
        return next((s for s in self.searches() if s["generation"] == generation and s["status"] == "running"), None)

    def finish_search(self, search_id: int, best_candidate: int, result: int) -> None:
        with self.transaction() as c:  # type: ignore[attr-defined]
            c.execute("UPDATE searches SET status = 'finished', best_candidate = ?, result = ? WHERE id = ?",
                      (best_candidate, result, search_id))

    def record_ask(self, search_id: int, idx: int, value: dict) -> None:
        with self.transaction() as c:  # type: ignore[attr-defined]
            c.execute("INSERT INTO search_candidates (search, idx, value) VALUES (?, ?, ?)",
                      (search_id, idx, json.dumps(value)))

    def record_tell(self, search_id: int, idx: int, *, told: int, objective: float, fitness: float,
                    loss: float | None, l1: float, task_scores: dict[str, float], seconds: float, worker: str,
                    rows: int | None = None) -> None:
        """``rows``: the fitness rows racing scored the candidate on, where it stopped it early."""
        with self.transaction() as c:  # type: ignore[attr-defined]
            c.execute("UPDATE search_candidates SET told = ?, objective = ?, fitness = ?, loss = ?, l1 = ?, "
                      "task_scores = ?, seconds = ?, worker = ?, rows = ? WHERE search = ? AND idx = ?",
                      (told, objective, fitness, loss, l1, json.dumps(task_scores), seconds, worker, rows,
                       search_id, idx))

    def search_candidates(self, search_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM search_candidates WHERE search = ? ORDER BY idx", (search_id,))
        return [{"rows": None, **dict(r), "value": json.loads(r["value"]),  # rows: absent in older stores
                 "task_scores": json.loads(r["task_scores"]) if r["task_scores"] else None} for r in rows]
