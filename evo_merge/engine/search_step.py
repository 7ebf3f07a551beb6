"""Coefficient searches driven by the engine: as a crossover inside evolution (every
``every`` generations) and as a whole LoraHub-style run (``evo-merge search``)."""

from __future__ import annotations

import time

from evo_merge.config import SearchConfig
from evo_merge.engine.core import Engine
from evo_merge.engine.racing import racer_of
from evo_merge.errors import EvoMergeError
from evo_merge.merge.groups import tensor_groups
from evo_merge.search import CoefficientSearch, CoefficientSpace
from evo_merge.search.plot import plot_search


def search(engine: Engine, generation: int, candidates: list[int], cfg: SearchConfig, race: bool = True) -> int:
    """Search merge coefficients for the fittest of ``candidates`` (or all of them); the best
    composition becomes an individual of ``generation``. An interrupted search resumes.
    ``race``: candidates race as ``evolution.racing`` says (a search inside evolution)."""
    db, rng = engine.db, engine.planner.rng
    row = db.open_search(generation)
    if row is None:
        ranked = engine.state.ranked(candidates)
        parents = ranked if cfg.parents == "all" else ranked[: cfg.parents]
        if len(parents) < 2:
            raise EvoMergeError(f"a coefficient search needs at least 2 parents, {len(parents)} available")
        seed = engine.planner.seed()
        search_id = db.add_search(generation, parents, cfg.model_dump(mode="json"), seed, rng.bit_generator.state)
    else:
        parents, seed, search_id = row["parents"], row["seed"], row["id"]
        rng.bit_generator.state = row["rng_state"]
    groups = tensor_groups(engine.layout.names, cfg.granularity, cfg.layer_groups, cfg.filters)
    space = CoefficientSpace(cfg, len(parents), groups, seed)
    engine.hooks.phase(f"search {cfg.optimizer}", cfg.budget)
    racing = engine.evo.racing
    runner = CoefficientSearch(search_id, cfg, space, parents, {p: engine.state[p].weights for p in parents}, seed,
                               db, engine.executor, engine.lora_mode, on_told=lambda n, best: engine.hooks.advance(),
                               racer=racer_of(engine, candidates) if race and racing.enabled and racing.search != "full"
                               else None)
    best = runner.run()
    child = engine.execute("search result", generation, [runner.recipe(best.candidate)])[0]
    db.finish_search(search_id, best.index, child)
    plot_search(db.search_candidates(search_id), engine.store.root / f"search-{search_id}.png",
                f"{cfg.optimizer}, {len(parents)} parents x {len(space.groups)} group(s), budget {cfg.budget}")
    return child


def run_search(engine: Engine, cfg: SearchConfig, resume: bool = False) -> int:
    """Standalone LoraHub-style run: score the members, search their best composition (every
    candidate on every fitness row: racing is evolution's)."""
    if resume:
        engine.resume()
    else:
        engine.initialize()
    start = time.perf_counter()
    members = list(engine.state.member_ids)
    child = search(engine, 1, members, cfg, race=False)
    engine.close_generation(1, members + [child], 1, time.perf_counter() - start)
    return child
