"""Racing's informative row order and the ``survival`` rule: rows by hand, the evaluator's
named-row splits against whole-set scores, selection's prediction on a hand-made pool, and
a raced run in which every survivor rests on the whole set and a resume equals it."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

import factories
from evo_merge.config import EvolutionConfig, RacingConfig, load_run_config
from evo_merge.engine.planner import Planner
from evo_merge.engine.racing import _would_survive
from evo_merge.engine.state import PopulationState, Record
from evo_merge.fitness.evaluator import KEPT_ROW_SPLITS, Evaluation, LocalEvaluator
from evo_merge.fitness.tasks import load_task
from evo_merge.operators.selection import select_survivors
from evo_merge.pool.jobs import JobResult
from evo_merge.racing import Partial, Racer, informative_order, rows_split
from evo_merge.store import RunStore
from resume_harness import DEMO, OVERRIDES
from test_racing import _check_raced, assert_resumes, run_once


def staged(racer: Racer, weights: str, *stages: dict[str, list[float]]) -> Partial:
    """A Partial scored on racer's first stages, with these scores (in the order scored)."""
    evs = [Evaluation(0.0, {}, {k: np.array(v, dtype=float) for k, v in s.items()}, {}) for s in stages]
    p = Partial(JobResult(weights, None, evs[0], 0.0, "local", "node"))
    for k, ev in enumerate(evs):
        p.add(ev, racer.stage_rows(k))
    return p


def test_informative_order_puts_the_rows_members_disagree_on_first():
    # 3 individuals; task a's 4 rows then task b's 3 (tasks in name order)
    examples = np.array([[1, 0, 1, 1, 0, 1, 0.5],
                         [1, 1, 0, 1, 0, 0, 0.5],
                         [1, 1, 1, 1, 0, 1, 0.5]], dtype=float)
    order = informative_order(examples, {"b": 3, "a": 4})
    # a: rows 1 and 2 vary (equally: row order), 0 and 3 do not; b: row 1 varies
    assert order["a"].tolist() == [1, 2, 0, 3] and order["b"].tolist() == [1, 0, 2]
    assert informative_order(None, {"a": 4})["a"].tolist() == [0, 1, 2, 3]


def test_stages_take_the_rows_in_order_and_scores_come_back_in_row_order():
    cfg = RacingConfig(enabled=True, stages=[0.5, 1.0], rule="estimate")
    racer = Racer(cfg, {"a": 0.5, "b": 0.5}, {"a": 4, "b": 2}, {"a": np.array([3, 1, 0, 2]), "b": np.array([1, 0])})
    assert racer.stage_rows(0)["a"].tolist() == [3, 1] and racer.stage_rows(1)["a"].tolist() == [0, 2]
    assert racer.splits()[0] == rows_split({"a": [3, 1], "b": [1]}) == 'fitness@{"a":[3,1],"b":[1]}'
    p = staged(racer, "w", {"a": [1, 0], "b": [1]})        # rows a3=1, a1=0, b1=1
    assert p.indices()["a"].tolist() == [1, 3] and p.scored()["a"].tolist() == [0, 1]
    # paired with the cut on the very rows scored: a1, a3, b1 of its whole-set rows
    cut = np.array([0, 1, 1, 1, 1, 0], dtype=float)        # a: 0 1 1 1, b: 1 0
    assert racer.fitness(p.scored()) == pytest.approx(0.5 * 0.5 + 0.5 * 1)
    assert racer.goes_on(p, 1.0, cut) and not racer.goes_on(p, 0.0, cut + np.array([0, 0, 0, 0, 0, 1]))
    prior = np.array([0.5, 0.5, 0.25, 1, 0, 0.5])
    assert racer.estimated(p, prior).tolist() == [0.5, 0, 0.25, 1, 0, 1]
    p.add(Evaluation(0.0, {}, {"a": np.array([1.0, 0.0]), "b": np.array([0.0])}, {}), racer.stage_rows(1))
    assert racer.complete(p) and p.scored()["a"].tolist() == [1, 0, 0, 1] and p.scored()["b"].tolist() == [0, 1]


def _engine(population_size: int, *examples: list[float]) -> SimpleNamespace:
    """An engine's state and planner around a population with these per-row scores (ids 0, 1, ...),
    selection keeping the fittest (half of them elites)."""
    evo = EvolutionConfig(population_size=population_size, selection={"method": "elites", "elite_fraction": 0.5})
    state = PopulationState()
    for i, rows in enumerate(examples):
        state.records[i] = Record(float(np.mean(rows)), f"w{i}", None, i, np.array(rows, dtype=float))
    return SimpleNamespace(state=state, planner=Planner(evo, state, np.random.default_rng(0), None, ()))


def test_survival_asks_the_runs_selection_with_unscored_rows_at_the_populations_best():
    engine = _engine(2, [1, 1, 0, 0], [1, 0, 1, 0])
    racer = Racer(RacingConfig(enabled=True, rule="survival", stages=[0.5, 1.0]), {"t": 1.0}, {"t": 4},
                  informative_order(engine.state.examples([0, 1]), {"t": 4}))
    assert racer.stage_rows(0)["t"].tolist() == [1, 2]     # the rows the two disagree on
    entries = [staged(racer, "wA", {"t": [1, 1]}),          # estimate 1, 1, 1, 0: 0.75
               staged(racer, "wB", {"t": [0, 0]}),          # 1, 0, 0, 0: 0.25
               staged(racer, "w0", {"t": [1, 1]}),          # a copy of member 0: never survives
               staged(racer, "wD", {"t": [1, 0]})]          # 1, 1, 0, 0: 0.5, after the members
    assert _would_survive(engine, racer, [0, 1], entries) == [0]
    entries[1] = staged(racer, "wB", {"t": [1, 1]})         # B ties A: both beat the members
    assert _would_survive(engine, racer, [0, 1], entries) == [0, 1]


def test_survival_stops_an_offspring_only_where_the_populations_best_on_its_unscored_rows_would_not_do():
    # members 0 1 1 0 (0.5) and 1 0 0 0 (0.25); the first quarter is row 0, where they differ
    engine = _engine(2, [0, 1, 1, 0], [1, 0, 0, 0])
    racer = Racer(RacingConfig(enabled=True, rule="survival", stages=[0.25, 1.0]), {"t": 1.0}, {"t": 4},
                  informative_order(engine.state.examples([0, 1]), {"t": 4}))
    assert racer.stage_rows(0)["t"].tolist() == [0]
    # wrong on row 0, the rest at the best member's 1, 1, 0: 0.5, above member 1 (at the members' mean
    # it would be 0.25 and lose the tie to member 1)
    assert _would_survive(engine, racer, [0, 1], [staged(racer, "wB", {"t": [0]})]) == [0]
    engine = _engine(2, [0, 1, 1, 0], [1, 1, 0, 0])       # now member 1 has 0.5 as well: ties go to members
    assert _would_survive(engine, racer, [0, 1], [staged(racer, "wB", {"t": [0]})]) == []


def test_the_prediction_draws_from_a_copy_of_the_runs_generator():
    evo = EvolutionConfig(population_size=3, selection={"method": "tournament", "elite_fraction": 0.0})
    planner = Planner(evo, PopulationState(), np.random.default_rng(7), None, ())
    before = planner.rng.bit_generator.state
    fitness = np.linspace(0, 1, 9)
    first = planner.would_survive(fitness, None)
    assert planner.rng.bit_generator.state == before and planner.would_survive(fitness, None) == first
    assert first == select_survivors("tournament", fitness, 3, np.random.default_rng(7), elite_fraction=0.0)
    planner.rng.random()
    assert planner.would_survive(fitness, None) == select_survivors(
        "tournament", fitness, 3, copy.deepcopy(planner.rng), elite_fraction=0.0)


def test_named_rows_score_as_the_whole_set_does_and_old_ones_are_dropped(tmp_path, tiny_full):
    from test_fitness import host_genome
    from evo_merge.model_host import ModelHost
    from evo_merge.population import load_population

    population = load_population(tiny_full)
    members = population.load_genomes()
    host = ModelHost(population.base_dir, next(iter(members.values())).layout, device="cpu")
    task = load_task(factories.write_task(tmp_path, metric="neg_loss"))
    ev = LocalEvaluator(host, [(task, 1.0)], batch_size=4)
    genome = host_genome(host)
    whole = ev.evaluate(genome).example_scores["tiny"]
    part = ev.evaluate(genome, rows_split({"tiny": [7, 2, 11]}))
    assert part.example_scores["tiny"] == pytest.approx(whole[[7, 2, 11]], abs=1e-5)
    assert part.score == pytest.approx(whole[[7, 2, 11]].mean(), abs=1e-5)
    for r in range(KEPT_ROW_SPLITS + 2):
        ev.evaluate(genome, rows_split({"tiny": [r]}))
    assert sum(s.startswith("fitness@") for s in ev.metrics) == KEPT_ROW_SPLITS


SURVIVAL = {**OVERRIDES, "evolution.generations": 2,
            "evolution.search": {**OVERRIDES["evolution.search"], "budget": 10},
            "evolution.racing": {"enabled": True, "rule": "survival", "search": "first_stage"}}


@pytest.fixture(scope="module")
def survived(tmp_path_factory):
    return run_once(tmp_path_factory, "survived", SURVIVAL)


def test_survival_racing_stops_offspring_and_keeps_only_whole_set_survivors(survived):
    cfg, prepared = survived
    total = sum(len(t.fitness) for t, _ in prepared.tasks)
    with RunStore.open(cfg.out) as store:
        db = store.lineage
        inds, stopped = _check_raced(db, total)
        scores = db.example_scores()
        for i in stopped:  # the rows scored, and the score is their mean
            assert len(scores[i.id]) == i.fitness_rows and i.fitness == pytest.approx(scores[i.id].mean(), abs=1e-6)
        raced = [i for i in inds.values() if i.generation > 0 and i.operator in ("crossover", "mutation")]
        assert any(not i.partial for i in raced)
        rows = [c["rows"] for s in db.searches() for c in db.search_candidates(s["id"]) if c["told"] is not None]
        first = sum(int(0.25 * len(t.fitness)) for t, _ in prepared.tasks)
        assert rows and all(r == first for r in rows)           # search candidates: the first stage only


def test_a_survival_raced_run_resumes_to_the_uninterrupted_one(survived, tmp_path):
    assert_resumes(SURVIVAL, survived, tmp_path, 0.6)


def test_racing_is_on_by_default_off_in_async_mode_unless_set_and_off_for_the_peers():
    from evo_merge.baselines import METHODS
    from evo_merge.errors import EvoMergeError

    assert load_run_config(DEMO).evolution.racing.enabled
    async_mode = {"pool.mode": "async", "evolution.search": None, "evolution.succession.enabled": False}
    assert not load_run_config(DEMO, async_mode).evolution.racing.enabled
    assert load_run_config(DEMO, {**async_mode, "evolution.racing": {"rule": "estimate"}}).evolution.racing.enabled
    with pytest.raises(EvoMergeError, match="races offspring one by one"):
        load_run_config(DEMO, {**async_mode, "evolution.racing": {"enabled": True}})
    for peer in ("GENOME", "GENOME+", "Model Swarms", "M2N2"):  # full scoring, as their authors run them
        assert METHODS.get(peer)(80).overrides["evolution.racing.enabled"] is False
    assert "evolution.racing.enabled" not in METHODS.get("evo-merge")(80).overrides
