"""The population state: one record per individual the engine has made or scored.

It is everything selection and planning read (fitness, per-example scores, own best) and
everything a job needs to name an individual's weights (hashes); it is rebuilt from the
lineage database on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evo_merge.operators.base import operator
from evo_merge.operators.recipe import Recipe


@dataclass
class Record:
    fitness: float
    weights: str
    velocity: str | None
    own_best: int
    examples: np.ndarray | None = None  # per-example fitness-split scores (niche operators)
    eligible: bool = True               # False: racing stopped it on part of the fitness set
    recipe: Recipe | None = None        # how it was made (None: a member); rebuilds it when unwritten


class PopulationState:
    def __init__(self) -> None:
        self.records: dict[int, Record] = {}
        self.member_ids: list[int] = []

    def __getitem__(self, ind_id: int) -> Record:
        return self.records[ind_id]

    def fitness_of(self, ind_id: int) -> float:
        return self.records[ind_id].fitness

    def fitness(self, ids: Sequence[int]) -> np.ndarray:
        return np.array([self.records[i].fitness for i in ids])

    def examples(self, ids: Sequence[int]) -> np.ndarray | None:
        """Rows of per-example scores for ``ids`` (None when some individual has none)."""
        rows = [self.records[i].examples for i in ids]
        return None if any(r is None for r in rows) else np.stack(rows)

    def ranked(self, ids: Sequence[int]) -> list[int]:
        """Fittest first, ties by id."""
        return sorted(ids, key=lambda i: (-self.records[i].fitness, i))

    def unique(self, pool: Sequence[int]) -> list[int]:
        """One individual per distinct genome (the earliest), so copies cannot crowd out diversity."""
        seen: set[str] = set()
        out = []
        for ind in pool:
            if self.records[ind].weights not in seen:
                seen.add(self.records[ind].weights)
                out.append(ind)
        return out

    def own_best(self, recipe: Recipe | None, ind_id: int, score: float) -> int:
        """The best of the individual and the own-bests of those whose search it continues
        (the operator says whose), so the swarm's cognitive term is never zero by construction."""
        sources = [] if recipe is None else operator(recipe.operator).own_best_sources(recipe)
        best, best_fit = ind_id, score
        for parent in sources:
            cand = self.records[parent].own_best
            if self.records[cand].fitness > best_fit:
                best, best_fit = cand, self.records[cand].fitness
        return best

    def job_inputs(self, recipe: Recipe) -> tuple[dict[int, str], dict[int, str]]:
        """Weight and velocity hashes of every individual a recipe names."""
        return ({p: self.records[p].weights for p in recipe.parents},
                {p: self.records[p].velocity for p in recipe.parents if self.records[p].velocity})

    @classmethod
    def restore(cls, db) -> "PopulationState":
        """The state of every individual recorded in the lineage database (resuming a run)."""
        state = cls()
        examples = db.example_scores()
        for ind in db.all():
            own = ind.personal_best if ind.personal_best is not None else ind.id
            state.records[ind.id] = Record(ind.fitness, ind.weights, ind.velocity, own, examples.get(ind.id),
                                           not ind.partial, None if ind.operator == "member" else ind.recipe())
            if ind.operator == "member":
                state.member_ids.append(ind.id)
        return state
