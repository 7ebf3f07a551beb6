"""The one run-signature helper of the tests: everything a run decided and measured."""

from __future__ import annotations

import sqlite3
from pathlib import Path

QUERIES = {
    "individuals": "SELECT id, generation, operator, name, parents, method, coefficients, params, seed, weights, "
                   "velocity, personal_best, fitness, task_scores, fitness_rows, partial, test_score FROM individuals "
                   "ORDER BY id",
    "population": "SELECT generation, id FROM population ORDER BY generation, id",
    "generations": "SELECT generation, best, mean, std, offspring FROM generations ORDER BY generation",
    "results": "SELECT name, fitness, test_score, detail FROM results ORDER BY name",
    "searches": "SELECT id, generation, parents, seed, status, best_candidate, result FROM searches ORDER BY id",
    "candidates": "SELECT search, idx, value, told, objective, fitness, rows FROM search_candidates "
                  "ORDER BY search, idx",
}


def signature(run_dir: Path, with_test: bool = True) -> dict[str, list[tuple]]:
    """Everything a run decided and measured: weight hashes, lineage, fitness, searches, results.
    ``with_test=False`` leaves out every test-split score (what selection must never see)."""
    queries = dict(QUERIES)
    if not with_test:
        queries["individuals"] = queries["individuals"].replace(", test_score FROM", " FROM")
        del queries["results"]
    conn = sqlite3.connect(Path(run_dir) / "lineage.sqlite")
    try:
        return {name: [tuple(r) for r in conn.execute(q)] for name, q in queries.items()}
    finally:
        conn.close()
