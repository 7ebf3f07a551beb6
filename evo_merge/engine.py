"""The evolutionary loop: plan offspring, have them built and scored, select survivors, report.

All random choices are drawn here from one numpy generator seeded by the run's seed;
each offspring gets its own seed (recorded in the lineage) for the randomness of its
operator. Fitness comes from the fitness split only; the test split is scored at the
end for the report and never feeds back into any choice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evo_merge.config import EvolutionConfig, SearchConfig
from evo_merge.engine_report import EngineReport
from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.operators.coefficients import COEFFICIENTS
from evo_merge.operators.parents import choose_parents
from evo_merge.operators.recipes import Recipe
from evo_merge.operators.selection import select_survivors
from evo_merge.merge.groups import tensor_groups
from evo_merge.operators.succession import swarm_randoms
from evo_merge.pool.jobs import Executor, Job, JobResult
from evo_merge.search import CoefficientSearch, CoefficientSpace
from evo_merge.search.plot import plot_search
from evo_merge.store import Individual, RunStore

SEED_BOUND = 2**62


@dataclass
class GenerationReport:
    generation: int
    best: float
    mean: float
    std: float
    offspring: int
    seconds: float


class EngineHooks:
    """Progress callbacks; the CLI draws bars and lines with them, tests ignore them."""

    def phase(self, name: str, total: int) -> None: ...
    def advance(self) -> None: ...
    def generation(self, report: GenerationReport) -> None: ...


class Engine(EngineReport):
    def __init__(self, evo: EvolutionConfig, seed: int, store: RunStore, executor: Executor,
                 members: dict[str, Genome], hooks: EngineHooks | None = None, mode: str = "generational",
                 async_offspring: int | None = None):
        self.evo, self.store, self.executor = evo, store, executor
        self.mode, self.async_offspring = mode, async_offspring
        self.members = members
        self.hooks = hooks or EngineHooks()
        self.rng = np.random.default_rng(seed)
        self.db = store.lineage
        self.fitness: dict[int, float] = {}
        self.personal_best: dict[int, int] = {}
        self.digest: dict[int, str] = {}
        self.velocity: dict[int, str | None] = {}
        self.examples: dict[int, np.ndarray] = {}  # per-example fitness-split scores (niche operators)
        self.member_ids: list[int] = []

    # -- running jobs -------------------------------------------------------------------------
    def _execute(self, phase: str, generation: int, recipes: Sequence[Recipe]) -> list[int]:
        """Build and score offspring, then record each in the lineage; returns their ids."""
        if not recipes:
            return []
        self.hooks.phase(phase, len(recipes))
        results = self.executor.run([self._job(r) for r in recipes], on_done=lambda _: self.hooks.advance())
        return [self._record(generation, r, res) for r, res in zip(recipes, results)]

    def _job(self, recipe: Recipe) -> Job:
        """A job carrying the weight (and velocity) hashes of every individual the recipe names."""
        return Job(recipe=recipe, inputs={p: self.digest[p] for p in recipe.parents},
                   velocities={p: self.velocity[p] for p in recipe.parents if self.velocity.get(p)})

    def _record(self, generation: int, recipe: Recipe | None, res: JobResult, name: str | None = None) -> int:
        ind_id = self.db.next_id()
        ev = res.evaluation
        parents = recipe.parents if recipe else []
        pbest = self._personal_best(recipe, ind_id, ev.score)
        examples = self._example_vector(ev)
        self.db.add(Individual(
            id=ind_id, generation=generation, operator=recipe.operator if recipe else "member", name=name,
            parents=list(parents), method=recipe.method if recipe else None,
            coefficients=recipe.coefficients if recipe else None, params=recipe.params if recipe else None,
            seed=recipe.seed if recipe else None, weights=res.weights, velocity=res.velocity,
            personal_best=pbest, fitness=ev.score, task_scores=ev.task_scores,
            build_seconds=res.build_seconds, eval_seconds=ev.seconds, worker=res.worker, node=res.node),
            example_scores=examples)
        self.fitness[ind_id] = ev.score
        self.digest[ind_id] = res.weights
        self.velocity[ind_id] = res.velocity
        self.personal_best[ind_id] = pbest
        self.examples[ind_id] = examples
        return ind_id

    @staticmethod
    def _example_vector(ev) -> np.ndarray:
        """All tasks' per-example scores on the fitness split, tasks in name order."""
        return np.concatenate([np.asarray(ev.example_scores[t], dtype=float) for t in sorted(ev.example_scores)]
                              or [np.zeros(0)])

    def _example_matrix(self, ids: Sequence[int]) -> np.ndarray | None:
        """Rows of per-example scores for ``ids`` (None when some individual has none)."""
        if any(i not in self.examples for i in ids):
            return None
        return np.stack([self.examples[i] for i in ids])
    def _personal_best(self, recipe: Recipe | None, ind_id: int, score: float) -> int:
        """The best of the individual and the own-bests of those whose search it continues.

        A swarm step continues its first parent's trajectory; a crossover or mutant child
        inherits the best own-best among its parents, so the cognitive term is never zero
        by construction.
        """
        sources = [] if recipe is None else recipe.parents[:1] if recipe.operator == "succession" else recipe.parents
        best, best_fit = ind_id, score
        for parent in sources:
            cand = self.personal_best[parent]
            if self.fitness[cand] > best_fit:
                best, best_fit = cand, self.fitness[cand]
        return best

    def _seed(self) -> int:
        return int(self.rng.integers(SEED_BOUND))

    # -- phases -------------------------------------------------------------------------------
    def initialize(self) -> list[int]:
        """Score the members (generation 0); with init='pairs', seed the population with merged pairs."""
        self.hooks.phase("members", len(self.members))
        for name, genome in self.members.items():
            digest = self.store.weights.save(genome)
            res = self.executor.run([Job(weights=digest)])[0]
            self.member_ids.append(self._record(0, None, res, name=name))
            self.hooks.advance()
        population = list(self.member_ids)
        if self.evo.init == "pairs":
            recipes = []
            for _ in range(self.evo.population_size):
                pair = [population[i] for i in self.rng.choice(len(population), 2, replace=False)]
                recipes.append(self._crossover_recipe(pair, COEFFICIENTS.get("random")(np.zeros(2), self.rng)))
            population = self._execute("pairs", 0, recipes)
        self._close_generation(0, population, len(population), 0.0)
        return population

    def restore(self) -> None:
        """Load every recorded individual's fitness, weights and velocity (resuming a run)."""
        for ind in self.db.all():
            self.fitness[ind.id] = ind.fitness
            self.digest[ind.id] = ind.weights
            self.velocity[ind.id] = ind.velocity
            self.personal_best[ind.id] = ind.personal_best if ind.personal_best is not None else ind.id
        self.examples.update(self.db.example_scores())

    def _crossover_recipe(self, parents: list[int], coefficients: list[float]) -> Recipe:
        cx = self.evo.crossover
        if cx.split_point > 0 and self.rng.random() < cx.split_point:
            return self._split_point_recipe(parents)
        probs = np.array([m.weight for m in cx.methods])
        choice = cx.methods[int(self.rng.choice(len(cx.methods), p=probs / probs.sum()))]
        params = dict(choice.params)
        if choice.method == "slerp":
            params.setdefault("t", coefficients[1] / sum(coefficients))
        if self.evo_is_lora:
            params["lora_mode"] = cx.lora_mode
        return Recipe("crossover", parents, choice.method, coefficients, params, self._seed())

    def _split_point_recipe(self, parents: list[int]) -> Recipe:
        """M2N2's crossover: layers before a random split take mix w of parent A (1 - w of B),
        the layers from the split on take 1 - w of A (w of B)."""
        n_layers = self._n_layers()
        split = int(self.rng.integers(1, n_layers)) if n_layers > 1 else 1
        w = float(self.rng.uniform(0.0, 1.0))
        groups = {"granularity": "split", "split_layer": split}
        labels = list(tensor_groups(next(iter(self.members.values())).layout.names, **groups).labels)
        params = {"groups": groups, "group_labels": labels, "normalize": False}
        if self.evo_is_lora:
            params["lora_mode"] = self.evo.crossover.lora_mode
        coefficients = [w, 1 - w, 1 - w, w][: 2 * len(labels)]
        return Recipe("composition", parents[:2], "linear", coefficients, params, self._seed())

    def _n_layers(self) -> int:
        from evo_merge.merge.groups import layer_index

        layers = [layer_index(n) for n in next(iter(self.members.values())).layout.names]
        return max((i for i in layers if i is not None), default=0) + 1

    @property
    def evo_is_lora(self) -> bool:
        return next(iter(self.members.values())).layout.kind == "lora"

    def plan_offspring(self, population: list[int]) -> list[Recipe]:
        """Crossover slots (probability ``rate`` each) then mutants (probability ``rate`` per individual)."""
        cx, mu = self.evo.crossover, self.evo.mutation
        fit = np.array([self.fitness[i] for i in population])
        recipes = []
        for _ in range(cx.slots if cx.slots is not None else max(1, len(population) // 2)):
            if self.rng.random() >= cx.rate:
                continue
            idx = choose_parents(cx.parent_selection, fit, cx.num_parents, self.rng, tournament_size=cx.tournament_size,
                                 examples=self._example_matrix(population))
            coeffs = COEFFICIENTS.get(cx.coefficients)(fit[idx], self.rng, given=cx.given)
            recipes.append(self._crossover_recipe([population[i] for i in idx], coeffs))
        for ind in population:
            if self.rng.random() < mu.rate:
                params = {"weight_rate": mu.weight_rate, "sigma": mu.sigma, "sigma_mode": mu.sigma_mode}
                recipes.append(Recipe("mutation", [ind], params=params, seed=self._seed()))
        return recipes

    def plan_succession(self, pool: list[int], generation: int) -> list[Recipe]:
        """A swarm step for each individual with probability ``rate``."""
        sc = self.evo.succession
        best = max(pool, key=self.fitness.__getitem__)
        worst = min(pool, key=self.fitness.__getitem__)
        step = sc.step * sc.step_decay ** (generation - 1)
        phi = {"inertia": sc.phi_inertia, "cognitive": sc.phi_cognitive, "social": sc.phi_social, "repel": sc.phi_repel}
        recipes = []
        for ind in pool:
            if self.rng.random() < sc.rate:
                seed = self._seed()
                params = {"r": swarm_randoms(seed), "phi": phi, "step": step}
                recipes.append(Recipe("succession", [ind, self.personal_best[ind], best, worst], params=params, seed=seed))
        return recipes

    def generation(self, generation: int, population: list[int]) -> list[int]:
        start = time.perf_counter()
        children = self._execute("offspring", generation, self.plan_offspring(population))
        sc = self.evo.search
        if sc is not None and generation % sc.every == 0:
            children.append(self.search(generation, population + children, sc))
        pool = population + children
        if self.evo.succession.enabled:
            # moved individuals join the pool beside their predecessors: selection decides,
            # so a step that lands somewhere worse can never lose an elite
            moved = self._execute("succession", generation, self.plan_succession(pool, generation))
            pool += moved
            children += moved
        pool = self._unique(pool)
        fit = np.array([self.fitness[i] for i in pool])
        sel = self.evo.selection
        keep = select_survivors(sel.method, fit, self.evo.population_size, self.rng,
                                elite_fraction=sel.elite_fraction, tournament_size=sel.tournament_size,
                                examples=self._example_matrix(pool))
        survivors = [pool[i] for i in keep]
        self._close_generation(generation, survivors, len(children), time.perf_counter() - start)
        return survivors

    def _unique(self, pool: list[int]) -> list[int]:
        """One individual per distinct genome (the earliest), so copies cannot crowd out diversity."""
        seen: set[str] = set()
        out = []
        for ind in pool:
            if self.digest[ind] not in seen:
                seen.add(self.digest[ind])
                out.append(ind)
        return out

    def _close_generation(self, generation: int, population: list[int], offspring: int, seconds: float,
                          extra: dict | None = None) -> None:
        """Record the generation and, in the same transaction, the checkpoint a resume starts from."""
        fit = np.array([self.fitness[i] for i in population])
        report = GenerationReport(generation, float(fit.max()), float(fit.mean()), float(fit.std()), offspring, seconds)
        checkpoint = {"generation": generation, "population": population, "rng_state": self.rng.bit_generator.state,
                      **(extra or {})}
        self.db.set_population(generation, population, vars(report), checkpoint)
        self.hooks.generation(report)

    def run(self, resume: bool = False) -> list[int]:
        """Initial population, then generations (or steady-state offspring); returns the final population.
        ``resume``: continue from the last checkpoint in the store."""
        start, population, async_state = self.resume() if resume else (1, self.initialize(), None)
        if self.mode == "async":
            return self.run_async(population, async_state)
        for g in range(start, self.evo.generations + 1):
            population = self.generation(g, population)
        return population

    def resume(self) -> tuple[int, list[int], dict | None]:
        """Roll the store back to its last checkpoint and restore the engine's state there.

        Everything recorded after the checkpoint is forgotten and made again: offspring
        seeds come from the restored generator, so they come out identical, and weight
        files are content-addressed, so rewriting one is harmless. Interrupted searches
        keep their candidate logs and continue by replay. Returns (next generation,
        population, async scheduler state)."""
        checkpoint = self.db.meta("checkpoint")
        self.db.rollback_to(checkpoint)
        if checkpoint is None:
            return 1, self.initialize(), None
        self.restore()
        self.member_ids = [i.id for i in self.db.all() if i.operator == "member"]
        self.rng.bit_generator.state = checkpoint["rng_state"]
        return checkpoint["generation"] + 1, list(checkpoint["population"]), checkpoint.get("async")

    def plan_one(self, population: list[int]) -> Recipe:
        """One offspring for steady-state mode: a crossover with probability ``rate``, else a mutant."""
        cx, mu = self.evo.crossover, self.evo.mutation
        fit = np.array([self.fitness[i] for i in population])
        if self.rng.random() < cx.rate and len(population) >= cx.num_parents:
            idx = choose_parents(cx.parent_selection, fit, cx.num_parents, self.rng, tournament_size=cx.tournament_size,
                                 examples=self._example_matrix(population))
            coeffs = COEFFICIENTS.get(cx.coefficients)(fit[idx], self.rng, given=cx.given)
            return self._crossover_recipe([population[i] for i in idx], coeffs)
        parent = population[choose_parents(cx.parent_selection, fit, 1, self.rng, tournament_size=cx.tournament_size,
                                           examples=self._example_matrix(population))[0]]
        params = {"weight_rate": mu.weight_rate, "sigma": mu.sigma, "sigma_mode": mu.sigma_mode}
        return Recipe("mutation", [parent], params=params, seed=self._seed())

    def run_async(self, population: list[int], state: dict | None = None) -> list[int]:
        """Steady state: a new offspring starts as soon as a worker is free; each finished one
        joins the population and selection trims it back to N. Every N/2 offspring is reported
        as one generation, with a checkpoint that lists the offspring still in flight."""
        total = self.async_offspring or max(1, self.evo.generations * self.evo.population_size // 2)
        per_report = max(1, self.evo.population_size // 2)
        capacity = getattr(self.executor, "capacity", 1)
        sel = self.evo.selection
        inflight: dict[int, Recipe] = {}
        planned, done, generation = (state["planned"], state["done"], state["generation"]) if state else (0, 0, 1)
        report_start = time.perf_counter()
        self.hooks.phase("offspring (async)", total)
        for recipe in (state or {}).get("inflight", []):
            recipe = Recipe(**recipe)
            inflight[self.executor.submit(self._job(recipe))] = recipe
        while len(inflight) < capacity and planned < total:
            recipe = self.plan_one(population)
            inflight[self.executor.submit(self._job(recipe))] = recipe
            planned += 1
        while inflight:
            ticket, res = self.executor.next_done()
            child = self._record(generation, inflight.pop(ticket), res)
            pool = self._unique(population + [child])
            fit = np.array([self.fitness[i] for i in pool])
            keep = select_survivors(sel.method, fit, self.evo.population_size, self.rng,
                                    elite_fraction=sel.elite_fraction, tournament_size=sel.tournament_size,
                                examples=self._example_matrix(pool))
            population = [pool[i] for i in keep]
            done += 1
            self.hooks.advance()
            if done % per_report == 0 or done == total:
                scheduler = {"planned": planned, "done": done, "generation": generation + 1,
                             "inflight": [inflight[t].to_dict() for t in sorted(inflight)]}
                self._close_generation(generation, population, per_report if done % per_report == 0
                                       else done % per_report, time.perf_counter() - report_start,
                                       extra={"async": scheduler})
                report_start, generation = time.perf_counter(), generation + 1
            if planned < total:
                recipe = self.plan_one(population)
                inflight[self.executor.submit(self._job(recipe))] = recipe
                planned += 1
        return population

    # -- coefficient search ---------------------------------------------------------------------
    def search(self, generation: int, candidates: list[int], cfg: SearchConfig) -> int:
        """Search merge coefficients for the fittest of ``candidates`` (or all of them); the best
        composition becomes an individual of ``generation``. An interrupted search resumes."""
        row = self.db.open_search(generation)
        if row is None:
            ranked = sorted(candidates, key=lambda i: (-self.fitness[i], i))
            parents = ranked if cfg.parents == "all" else ranked[: cfg.parents]
            if len(parents) < 2:
                raise EvoMergeError(f"a coefficient search needs at least 2 parents, {len(parents)} available")
            seed = self._seed()
            search_id = self.db.add_search(generation, parents, cfg.model_dump(mode="json"), seed,
                                           self.rng.bit_generator.state)
        else:
            parents, seed, search_id = row["parents"], row["seed"], row["id"]
            self.rng.bit_generator.state = row["rng_state"]
        layout = next(iter(self.members.values())).layout
        space = CoefficientSpace(cfg, len(parents), tensor_groups(layout.names, cfg.granularity, cfg.layer_groups,
                                                                   cfg.filters), seed)
        self.hooks.phase(f"search {cfg.optimizer}", cfg.budget)
        search = CoefficientSearch(search_id, cfg, space, parents, {p: self.digest[p] for p in parents}, seed,
                                   self.db, self.executor, self.evo_is_lora, on_told=lambda n, best: self.hooks.advance())
        best = search.run()
        child = self._execute("search result", generation, [search.recipe(best.candidate)])[0]
        self.db.finish_search(search_id, best.index, child)
        plot_search(self.db.search_candidates(search_id), self.store.root / f"search-{search_id}.png",
                    f"{cfg.optimizer}, {len(parents)} parents x {len(space.groups)} group(s), budget {cfg.budget}")
        return child

    def run_search(self, cfg: SearchConfig, resume: bool = False) -> int:
        """Standalone LoraHub-style run: score the members, search their best composition."""
        if resume:
            self.resume()
        else:
            self.initialize()
        start = time.perf_counter()
        child = self.search(1, list(self.member_ids), cfg)
        self._close_generation(1, self.member_ids + [child], 1, time.perf_counter() - start)
        return child
