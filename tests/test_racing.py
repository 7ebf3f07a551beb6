"""Racing: the rules' arithmetic by hand, and runs in which offspring and search candidates
stop early while every survivor and search result rests on the whole fitness set, the
lineage records the rows, and a resumed run equals the uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest

from evo_merge.config import RacingConfig, load_run_config
from evo_merge.fitness.evaluator import Evaluation
from evo_merge.pool.jobs import JobResult
from evo_merge.racing import Partial, Racer
from evo_merge.runner import execute, prepare, resume_run
from evo_merge.store import RunStore
from resume_harness import DEMO, OVERRIDES
from signatures import signature


def partial(**scores: list[float]) -> Partial:
    ev = Evaluation(0.0, {}, {k: np.array(v, dtype=float) for k, v in scores.items()}, {})
    p = Partial(JobResult("w", None, ev, 0.0, "local", "node"))
    p.add(ev)
    return p


def test_hoeffding_rule_by_hand():
    racer = Racer(RacingConfig(enabled=True, rule="hoeffding", delta=0.05), {"t": 1.0}, {"t": 40})
    p = partial(t=[1, 0, 1, 1, 0, 1, 1, 1, 0, 1])   # 7 of 10
    bound = np.sqrt(np.log(1 / 0.05) / 20)          # 0.387: the rate's upper bound is 1.0
    assert min(1.0, 0.7 + bound) == 1.0
    assert racer.optimistic(p.scored()) == pytest.approx((7 + 30) / 40)
    assert racer.goes_on(p, 0.92) and not racer.goes_on(p, 0.93)


def test_estimate_rule_is_paired_with_the_cut_individual_on_the_same_rows():
    racer = Racer(RacingConfig(enabled=True, rule="estimate"), {"a": 0.75, "b": 0.25}, {"a": 8, "b": 4})
    p = partial(a=[1, 1, 0, 0], b=[1, 0])           # 0.75 * 0.5 + 0.25 * 0.5 = 0.5
    # the cut's whole-set rows, tasks in name order: a's 8, then b's 4; on p's rows: a 3/4, b 1/2
    cut = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1], dtype=float)
    assert racer.fitness(p.scored()) == pytest.approx(0.5)
    assert not racer.goes_on(p, cut.mean(), cut)    # 0.5 < 0.75 * 0.75 + 0.25 * 0.5 = 0.6875
    assert racer.goes_on(p, 0.5) and not racer.goes_on(p, 0.51)  # no per-row scores: a whole-set value
    loose = Racer(RacingConfig(enabled=True, rule="estimate", margin=0.2), racer.weights, racer.totals)
    assert loose.goes_on(p, 0.0, cut)               # 0.5 >= 0.6875 - 0.2


def test_halving_keeps_the_fittest_share_ties_to_the_earlier():
    racer = Racer(RacingConfig(enabled=True, rule="halving", keep=0.5), {"t": 1.0}, {"t": 8})
    racing = {0: partial(t=[1, 0]), 3: partial(t=[1, 1]), 5: partial(t=[0, 0]), 7: partial(t=[0, 1]),
              9: partial(t=[1, 1])}
    assert racer.next_stage(racing, 1.0, None) == [0, 3, 9]  # ceil(5 / 2) = 3: 3 and 9, then 0 before 7
    assert racer.next_stage({5: racing[5]}, 0.0, None) == [5]  # one always goes on


def test_stages_must_increase_and_end_at_one():
    with pytest.raises(ValueError, match="stages"):
        RacingConfig(stages=[0.5, 0.25, 1.0])
    with pytest.raises(ValueError, match="stages"):
        RacingConfig(stages=[0.25, 0.5])
    assert Racer(RacingConfig(), {}, {}).splits() == ["fitness[0:0.25]", "fitness[0.25:0.5]", "fitness[0.5:1]"]


RACING = {**OVERRIDES, "evolution.generations": 2, "evolution.search": {**OVERRIDES["evolution.search"], "budget": 10},
          "evolution.racing": {"enabled": True, "rule": "halving", "search": "race"}}


def run_once(tmp_path_factory, name: str, overrides: dict):
    """A run of the demo config with ``overrides``: (its config, its prepared inputs)."""
    cfg = load_run_config(DEMO, {**overrides, "out": str(tmp_path_factory.mktemp(name) / "run")})
    prepared = prepare(cfg)
    execute(cfg, prepared=prepared)
    return cfg, prepared


def assert_resumes(overrides: dict, whole, tmp_path, fraction: float) -> None:
    """A run stopped at ``fraction`` of its steps and resumed equals the uninterrupted ``whole``."""
    from test_resume import CrashAt

    cfg, prepared = whole
    steps = CrashAt(10**9)
    again = load_run_config(DEMO, {**overrides, "out": str(tmp_path / "count")})
    execute(again, steps, prepared)
    cut = load_run_config(DEMO, {**overrides, "out": str(tmp_path / "cut")})
    with pytest.raises(KeyboardInterrupt):
        execute(cut, CrashAt(int(fraction * (10**9 - steps.n))), prepared)
    resume_run(cut.out, prepared=prepared)
    assert signature(cut.out) == signature(cfg.out) == signature(again.out)


@pytest.fixture(scope="module")
def raced(tmp_path_factory):
    return run_once(tmp_path_factory, "raced", RACING)


def _check_raced(db, total: int):
    """Some individuals stopped on part of the rows, the others rest on all of them, and no
    population ever holds a stopped one. Returns (individuals by id, the stopped ones)."""
    inds = {i.id: i for i in db.all()}
    stopped = [i for i in inds.values() if i.partial]
    assert stopped and all(0 < i.fitness_rows < total for i in stopped)
    assert all(i.fitness_rows in (None, total) for i in inds.values() if not i.partial)
    assert not any(inds[i].partial for g in range(db.last_generation() + 1) for i in db.population(g))
    return inds, stopped


def test_raced_out_offspring_are_recorded_and_never_survive(raced):
    cfg, prepared = raced
    total = sum(len(t.fitness) for t, _ in prepared.tasks)
    with RunStore.open(cfg.out) as store:
        db = store.lineage
        inds, stopped = _check_raced(db, total)
        for g in range(1, cfg.evolution.generations + 1):  # halving: half go on after each of 2 stages
            raced = [i for i in inds.values() if i.generation == g and i.operator in ("crossover", "mutation")]
            assert sum(not i.partial for i in raced) == max(1, -(-max(1, -(-len(raced) // 2)) // 2))
        rows = [c["rows"] for s in db.searches() for c in db.search_candidates(s["id"]) if c["told"] is not None]
        assert any(r is not None for r in rows) and any(r is None for r in rows)
        assert all(inds[s["result"]].fitness_rows in (None, total) for s in db.searches())
        assert len(db.example_scores()[stopped[0].id]) == stopped[0].fitness_rows


@pytest.mark.parametrize("fraction", [0.3, 0.8])
def test_a_raced_run_resumes_to_the_uninterrupted_one(raced, tmp_path, fraction):
    assert_resumes(RACING, raced, tmp_path, fraction)


def test_only_the_hoeffding_rule_needs_scores_in_0_1(tmp_path, tiny_lora):
    import factories
    from evo_merge.errors import EvoMergeError

    task = factories.write_task(tmp_path, metric="neg_loss")
    path = factories.write_run_config(tmp_path, tiny_lora, task, generations=1)
    with pytest.raises(EvoMergeError, match="rule hoeffding needs metrics with scores in \\[0, 1\\]; task tiny"):
        prepare(load_run_config(path, {"evolution.racing": {"enabled": True, "rule": "hoeffding"}}))
    prepare(load_run_config(path, {"evolution.racing": {"enabled": True, "rule": "halving"}}))


def test_candidates_show_the_rows_a_raced_out_candidate_rests_on(raced, cli):
    import json

    cfg, _ = raced
    code, out, err = cli("candidates", cfg.out, "--search", "1", "--format", "json")
    assert code == 0, err
    rows = [c["fitness_rows"] for c in json.loads(out)]
    assert None in rows and any(isinstance(r, int) and r > 0 for r in rows)
    code, out, _ = cli("candidates", cfg.out, "--search", "1")
    assert code == 0 and " rows)" in out


ASYNC = {**OVERRIDES, "pool.backend": "local", "pool.mode": "async", "evolution.generations": 10,
         "evolution.population_size": 6, "evolution.succession.enabled": False, "evolution.search": None,
         "evolution.racing": {"enabled": True, "rule": "estimate"}}


@pytest.mark.parametrize("fraction", [0.4, 0.8])
def test_async_racing_stops_offspring_that_cannot_reach_the_population_and_resumes(tmp_path, fraction):
    """Steady-state mode races offspring one by one against the weakest individual at each stage's
    end: some stop on part of the rows, none of them ever joins, and a run stopped and resumed
    equals the uninterrupted one (the local pool has one offspring in flight)."""
    from test_resume import CrashAt

    whole = load_run_config(DEMO, {**ASYNC, "out": str(tmp_path / "whole")})
    prepared = prepare(whole)
    counter = CrashAt(10**9)
    execute(whole, counter, prepared)
    total = sum(len(t.fitness) for t, _ in prepared.tasks)
    with RunStore.open(whole.out) as store:
        inds, _ = _check_raced(store.lineage, total)
        assert any(i.fitness_rows == total for i in inds.values() if i.generation > 0)
    cut = load_run_config(DEMO, {**ASYNC, "out": str(tmp_path / "cut")})
    with pytest.raises(KeyboardInterrupt):
        execute(cut, CrashAt(int(fraction * (10**9 - counter.n))), prepared)
    resume_run(cut.out, prepared=prepared)
    assert signature(cut.out) == signature(whole.out)
