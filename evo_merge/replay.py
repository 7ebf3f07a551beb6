"""Rebuild individuals from their recorded recipes, and drop weights that can be rebuilt.

Every individual other than a member is a pure function of its recipe (operator, method,
coefficients, parameters, seed) and its parents' weights (and, for a swarm step, the
moved individual's velocity). ``Rebuilder`` (``store/rebuild.py``) makes an individual
again from the stored weights of its parents, rebuilding missing ancestors recursively
from the members, which are never deleted: offspring a run never wrote (those that died
in their own generation) and files ``gc`` collected alike. ``collect_garbage`` deletes
the weights of dead individuals, which stay replayable because the members are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from evo_merge.errors import EvoMergeError
from evo_merge.store import RunStore
from evo_merge.store.rebuild import Rebuilder

__all__ = ["GarbageReport", "Rebuilder", "ReplayResult", "collect_garbage", "living", "replay"]


@dataclass
class ReplayResult:
    individual: int
    weights_equal: bool
    velocity_equal: bool | None  # None: the individual has no velocity
    rebuilt_ancestors: int


def replay(store: RunStore, ind_id: int, device: str = "cpu") -> ReplayResult:
    """Rebuild an individual and compare it with its recorded weight (and velocity) hashes."""
    rebuilder = Rebuilder(store, device)
    ind = rebuilder.row(ind_id)
    built = rebuilder.build(ind_id)
    weights_equal = built.genome.content_hash() == ind.weights
    velocity_equal = None
    if ind.velocity is not None:
        velocity_equal = built.velocity is not None and built.velocity.content_hash() == ind.velocity
    return ReplayResult(ind_id, weights_equal, velocity_equal, rebuilder.rebuilt - 1)


@dataclass
class GarbageReport:
    deleted_files: int
    freed_bytes: int
    kept_individuals: int


def living(store: RunStore) -> set[int]:
    """Members, the last population and their own-bests, and everything the results name."""
    db = store.lineage
    rows = {i.id: i for i in db.all()}
    keep = {i for i, r in rows.items() if r.operator == "member"}
    last = db.population()
    keep.update(last)
    keep.update(rows[i].personal_best for i in last if rows[i].personal_best is not None)
    for result in db.results():
        detail = result["detail"]
        keep.update(detail.get("ids", []))
        if "id" in detail:
            keep.add(detail["id"])
    keep.update(s["result"] for s in db.searches() if s["result"] is not None)
    return keep


def collect_garbage(store: RunStore, dry_run: bool = False) -> GarbageReport:
    """Delete the weight and velocity files that only dead individuals use. Refused while
    the run is unfinished, since a resume needs its checkpoint's individuals."""
    db = store.lineage
    if db.meta("status") != "finished":
        raise EvoMergeError(f"{store.root}: the run has not finished; resume it before collecting garbage")
    keep_ids = living(store)
    rows = db.all()
    keep_hashes = {h for r in rows if r.id in keep_ids for h in (r.weights, r.velocity) if h}
    doomed = {h for r in rows if r.id not in keep_ids for h in (r.weights, r.velocity) if h} - keep_hashes
    for digest in keep_hashes:  # every hash the database holds is checked before any delete
        store.weights.path(digest)
    paths = [store.weights.path(digest) for digest in sorted(doomed)]
    deleted = freed = 0
    for path in paths:
        if path.is_file():
            freed += path.stat().st_size
            deleted += 1
            if not dry_run:
                path.unlink()
    return GarbageReport(deleted, freed, len(keep_ids))
