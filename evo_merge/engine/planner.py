"""The planner: turns the population state and the run's seeded generator into recipes.

Every random choice of a run is drawn here, in a fixed order, from one numpy generator;
each recipe carries its own seed for its operator's randomness. The operator modules
hold the rules; this class only decides which operator plans when.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np

from evo_merge.config import EvolutionConfig
from evo_merge.operators.base import PlanContext, operator
from evo_merge.operators.coefficients import COEFFICIENTS
from evo_merge.operators.crossover import crossover_recipe, plan_crossover, plan_crossovers, uniform_merge_recipe
from evo_merge.operators.layerwise import layerwise_recipe
from evo_merge.operators.mutation import mutation_recipe, plan_mutants
from evo_merge.operators.parents import choose_parents
from evo_merge.operators.recipe import Recipe
from evo_merge.operators.selection import select_survivors
from evo_merge.operators.succession import plan_succession
from evo_merge.engine.state import PopulationState


class Planner:
    def __init__(self, evo: EvolutionConfig, state: PopulationState, rng: np.random.Generator,
                 lora_mode: str | None, names: tuple[str, ...]):
        self.evo, self.state = evo, state
        self.ctx = PlanContext(rng, lora_mode, names)

    @property
    def rng(self) -> np.random.Generator:
        return self.ctx.rng

    def seed(self) -> int:
        return self.ctx.seed()

    def initial_pairs(self, members: Sequence[int]) -> list[Recipe]:
        """``init: pairs``: random-coefficient merges of random member pairs."""
        recipes = []
        for _ in range(self.evo.population_size):
            pair = [members[i] for i in self.rng.choice(len(members), 2, replace=False)]
            coeffs = COEFFICIENTS.get("random")(np.zeros(2), self.rng)
            recipes.append(crossover_recipe(self.evo.crossover, self.ctx, pair, coeffs))
        return recipes

    def offspring(self, population: Sequence[int], boost: float = 1.0) -> list[Recipe]:
        """A generation's crossovers (one attempt per slot) then mutants (one chance per individual,
        sigma times ``boost``), then any further operators."""
        fit = self.state.fitness(population)
        recipes = plan_crossovers(self.evo.crossover, self.ctx, fit, population, self.state.examples(population))
        recipes += plan_mutants(self.evo.mutation, self.ctx, population, boost, self.state.member_ids)
        for choice in self.evo.operators:
            op = operator(choice.name)
            recipes += op.plan(self.ctx, population, fit, op.Config.model_validate(choice.params))
        return recipes

    def one(self, population: Sequence[int], boost: float = 1.0) -> Recipe:
        """One offspring for steady-state mode: a crossover with probability ``rate``, else a mutant
        (sigma times ``boost``)."""
        cx = self.evo.crossover
        fit = self.state.fitness(population)
        examples = self.state.examples(population)
        if self.rng.random() < cx.rate and len(population) >= cx.num_parents:
            return plan_crossover(cx, self.ctx, fit, population, examples)
        parent = population[choose_parents(cx.parent_selection, fit, 1, self.rng, tournament_size=cx.tournament_size,
                                           examples=examples)[0]]
        return mutation_recipe(self.evo.mutation, self.ctx, parent, boost, members=self.state.member_ids)

    def succession(self, pool: Sequence[int], generation: int) -> list[Recipe]:
        return plan_succession(self.evo.succession, self.ctx, pool, generation, self.state.fitness_of,
                               lambda i: self.state[i].own_best)

    def survivors(self, pool: Sequence[int]) -> list[int]:
        """Selection: ``population_size`` of the pool, elites first."""
        sel = self.evo.selection
        keep = select_survivors(sel.method, self.state.fitness(pool), self.evo.population_size, self.rng,
                                elite_fraction=sel.elite_fraction, tournament_size=sel.tournament_size,
                                examples=self.state.examples(pool))
        return [pool[i] for i in keep]

    def would_survive(self, fitness: np.ndarray, examples: np.ndarray | None) -> list[int]:
        """Which of a pool (its fitness and per-example scores) selection would keep now, drawn
        from a copy of the run's generator (racing asks; the run's draws stay as they were)."""
        sel = self.evo.selection
        return select_survivors(sel.method, fitness, self.evo.population_size, copy.deepcopy(self.rng),
                                elite_fraction=sel.elite_fraction, tournament_size=sel.tournament_size,
                                examples=examples)

    def immigrants(self, n: int) -> list[Recipe]:
        """New random merges of the members: random weights, each layer its own random subset."""
        members = self.state.member_ids
        return [layerwise_recipe(self.ctx, list(members), list(self.rng.dirichlet(np.ones(len(members)))),
                                 self.evo.crossover.layer_groups) for _ in range(n)]

    def archive(self, n: int) -> list[int]:
        """The ``n`` fittest distinct individuals found so far (a restart's population)."""
        eligible = [i for i, r in self.state.records.items() if r.eligible]
        return self.state.unique(self.state.ranked(eligible))[:n]

    def uniform_merge(self) -> Recipe:
        return uniform_merge_recipe(self.ctx, self.state.member_ids)
