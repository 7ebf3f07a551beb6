"""Resume and crash safety: a resumed run equals an uninterrupted one; locks, corruption, replay, gc."""

from __future__ import annotations

from pathlib import Path

import pytest

from evo_merge.config import load_run_config
from evo_merge.engine import EngineHooks
from evo_merge.errors import EvoMergeError
from evo_merge.replay import collect_garbage, replay
from evo_merge.runner import execute, prepare, resume_run
from evo_merge.store import RunStore
from resume_harness import DEMO, OVERRIDES
from signatures import signature


class CrashAt(EngineHooks):
    """Raises at the n-th progress step: the run stops there as a killed process would."""

    def __init__(self, n: int):
        self.n = n

    def advance(self) -> None:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt("simulated kill")


def config(tmp_path: Path, name: str):
    return load_run_config(DEMO, {**OVERRIDES, "out": str(tmp_path / name)})


def stopped_run(tmp_path: Path, prepared, at: int):
    """The config of a run stopped at its ``at``-th progress step."""
    cfg = config(tmp_path, "cut")
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, CrashAt(max(1, at)), prepared)
    return cfg


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whole")
    cfg = config(tmp, "run")
    prepared = prepare(cfg)
    counter = CrashAt(10**9)
    execute(cfg, counter, prepared)
    return cfg.out, prepared, 10**9 - counter.n


def test_the_harness_run_covers_every_phase(uninterrupted):
    run_dir, _, steps = uninterrupted
    sig = signature(run_dir)
    ops = {r[2] for r in sig["individuals"]}
    assert {"member", "crossover", "mutation", "succession", "composition", "merge"} <= ops
    assert sig["searches"] and steps > 40


@pytest.mark.parametrize("fraction", [0.02, 0.2, 0.45, 0.5, 0.55, 0.7, 0.9, 0.99])
def test_resume_after_a_stop_anywhere_equals_the_uninterrupted_run(uninterrupted, tmp_path, fraction):
    run_dir, prepared, steps = uninterrupted
    cfg = stopped_run(tmp_path, prepared, int(fraction * steps))
    resume_run(cfg.out, prepared=prepared)
    assert signature(cfg.out) == signature(run_dir)


def test_resume_twice_in_a_row_and_a_finished_run_is_refused(uninterrupted, tmp_path):
    run_dir, prepared, steps = uninterrupted
    cfg = stopped_run(tmp_path, prepared, steps // 4)
    with pytest.raises(KeyboardInterrupt):
        resume_run(cfg.out, CrashAt(steps // 3), prepared)
    resume_run(cfg.out, prepared=prepared)
    assert signature(cfg.out) == signature(run_dir)
    with pytest.raises(EvoMergeError, match="already finished"):
        resume_run(cfg.out, prepared=prepared)


def test_second_process_on_a_run_directory_is_refused(uninterrupted, tmp_path):
    run_dir, prepared, steps = uninterrupted
    cfg = stopped_run(tmp_path, prepared, steps // 2)
    holder = RunStore.open(cfg.out, lock=True)
    try:
        with pytest.raises(EvoMergeError, match="in use by another evo-merge process"):
            resume_run(cfg.out, prepared=prepared)
    finally:
        holder.close()
    resume_run(cfg.out, prepared=prepared)


def test_corrupted_weight_file_is_reported_by_name(uninterrupted, tmp_path):
    run_dir, prepared, steps = uninterrupted
    cfg = stopped_run(tmp_path, prepared, steps // 2)
    with RunStore.open(cfg.out) as store:
        pop = store.lineage.meta("checkpoint")["population"]
        victim = store.weights.path(store.lineage.get(pop[0]).weights)
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(EvoMergeError, match=f"weight file corrupted \\(checksum mismatch\\): {victim}"):
        resume_run(cfg.out, prepared=prepared)


def test_truncated_database_is_a_clear_error(uninterrupted, tmp_path, cli):
    import shutil

    run_dir, _, _ = uninterrupted
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    db = copy / "lineage.sqlite"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    before = db.read_bytes()
    for command in (["status", copy], ["resume", copy], ["lineage", copy]):
        code, _, err = cli(*command)
        assert code == 2 and err.count("\n") == 1 and "lineage database unreadable" in err, err
    assert db.read_bytes() == before


def test_replay_rebuilds_every_individual_and_gc_keeps_them_replayable(uninterrupted, tmp_path, cli):
    import shutil

    run_dir, _, _ = uninterrupted
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    with RunStore.open(copy) as store:
        made = [i for i in store.lineage.all() if i.operator != "member"]
        for ind in made:
            res = replay(store, ind.id)
            assert res.weights_equal and res.velocity_equal is not False, ind
    code, out, err = cli("gc", copy)
    assert code == 0 and "deleted" in out, err
    with RunStore.open(copy) as store:
        gone = [i for i in store.lineage.all() if not store.weights.path(i.weights).is_file()]
        assert gone and all(i.operator != "member" for i in gone)
        deepest = max(gone, key=lambda i: i.generation)
        res = replay(store, deepest.id)
        assert res.weights_equal and res.rebuilt_ancestors >= 0
        assert collect_garbage(store, dry_run=True).deleted_files == 0
    code, out, _ = cli("replay", copy, deepest.id)
    assert code == 0 and "weights equal" in " ".join(out.split())
    code, _, err = cli("replay", copy, 10**6)
    assert code == 2 and "no individual 1000000" in err


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_async_mode_resumes_to_the_uninterrupted_run(tmp_path, fraction):
    overrides = {"pool.backend": "local", "pool.mode": "async", "evolution.generations": 4,
                 "evolution.population_size": 6, "evolution.succession.enabled": False}
    whole = load_run_config(DEMO, {**overrides, "out": str(tmp_path / "whole")})
    prepared = prepare(whole)
    counter = CrashAt(10**9)
    execute(whole, counter, prepared)
    steps = 10**9 - counter.n
    cut = load_run_config(DEMO, {**overrides, "out": str(tmp_path / "cut")})
    with pytest.raises(KeyboardInterrupt):
        execute(cut, CrashAt(int(fraction * steps)), prepared)
    resume_run(cut.out, prepared=prepared)
    assert signature(cut.out) == signature(whole.out)
