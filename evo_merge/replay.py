"""Rebuild individuals from their recorded recipes, and drop weights that can be rebuilt.

Every individual other than a member is a pure function of its recipe (operator, method,
coefficients, parameters, seed) and its parents' weights (and, for a swarm step, the
moved individual's velocity). ``Rebuilder`` makes an individual again from the stored
weights of its parents, rebuilding missing ancestors recursively from the members, which
are never deleted. ``collect_garbage`` deletes the weights of dead individuals, which
stay replayable because the members and the living are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.operators.base import build
from evo_merge.operators.recipe import Built
from evo_merge.store import Individual, RunStore


@dataclass
class ReplayResult:
    individual: int
    weights_equal: bool
    velocity_equal: bool | None  # None: the individual has no velocity
    rebuilt_ancestors: int


class Rebuilder:
    """Makes individuals again from their recipes; stored weights are used where present."""

    def __init__(self, store: RunStore, device: str | torch.device = "cpu"):
        self.store, self.device = store, torch.device(device)
        self.rows: dict[int, Individual] = {i.id: i for i in store.lineage.all()}
        self._built: dict[int, Built] = {}
        self.rebuilt = 0

    def row(self, ind_id: int) -> Individual:
        if ind_id not in self.rows:
            raise EvoMergeError(f"no individual {ind_id} in {self.store.root}")
        return self.rows[ind_id]


    def genome(self, ind_id: int) -> Genome:
        """The individual's weights: its stored file, or rebuilt when the file was collected."""
        ind = self.row(ind_id)
        if self.store.weights.path(ind.weights).is_file():
            return self.store.weights.load(ind.weights, device=self.device)
        if ind.operator == "member":
            raise EvoMergeError(f"member {ind.id} ({ind.name}): weight file missing: "
                                f"{self.store.weights.path(ind.weights)}")
        return self.build(ind_id).genome

    def velocity(self, ind_id: int) -> Genome | None:
        ind = self.row(ind_id)
        if ind.velocity is None:
            return None
        if self.store.weights.path(ind.velocity).is_file():
            return self.store.weights.load(ind.velocity, device=self.device)
        return self.build(ind_id).velocity

    def build(self, ind_id: int) -> Built:
        """Make the individual from its recipe (members cannot be rebuilt: they are the roots)."""
        if ind_id not in self._built:
            ind = self.row(ind_id)
            if ind.operator == "member":
                raise EvoMergeError(f"individual {ind_id} is a member: it has no recipe to replay")
            self._built[ind_id] = build(ind, self.genome, self.velocity)
            self.rebuilt += 1
        return self._built[ind_id]


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
