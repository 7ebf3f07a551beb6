"""The weight store of a full-weight run stays within members + 2 x population model copies
after every generation close (and at every write), offspring that die in their own
generation are never written, and replay rebuilds them to their recorded hashes."""

from __future__ import annotations

from pathlib import Path

import factories
import pytest

from evo_merge.config import load_run_config
from evo_merge.engine import EngineHooks
from evo_merge.replay import replay
from evo_merge.runner import execute
from evo_merge.store import RunStore
from evo_merge.store.run_store import weight_store_line, weight_store_usage
from evo_merge.store.weights import WeightStore

MEMBERS, N = 3, 4
EVO = {"generations": 4, "population_size": N, "succession": {"enabled": True, "rate": 0.5},
       "mutation": {"rate": 0.5, "sigma": 0.02},
       "crossover": {"methods": [{"method": "ties", "params": {"density": 0.7}}, {"method": "linear"}]},
       "search": {"every": 2, "parents": 3, "budget": 4, "optimizer": "NGOpt", "num_workers": 1}}


def files(run_dir: Path) -> list[str]:
    return sorted(p.name[: -len(".safetensors")] for p in (run_dir / "weights").glob("*.safetensors"))


class CountAtClose(EngineHooks):
    """Counts the weight files each time a generation has closed (a hook, not a timer)."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.counts = run_dir, []

    def generation(self, report) -> None:
        self.counts.append((report.generation, len(files(self.run_dir))))


@pytest.mark.parametrize("mode", ["generational", "async"])
def test_disk_stays_within_members_plus_twice_the_population(tiny_full, tiny_task, tmp_path, monkeypatch, mode):
    evo = dict(EVO)
    if mode == "async":  # steady state runs neither searches nor succession
        evo.pop("search")
        evo["succession"] = {"enabled": False}
    cfg = load_run_config(factories.write_run_config(tmp_path, tiny_full, tiny_task, **evo),
                          {"pool.mode": mode} if mode == "async" else {})
    run_dir = Path(cfg.out)
    bound = MEMBERS + 2 * N
    written: list[str] = []
    most = [0]
    save = WeightStore.save

    def spy(self, genome, digest=None):
        out = save(self, genome, digest)
        if self.root.parent.resolve() == run_dir.resolve():
            written.append(out)
            most[0] = max(most[0], len(files(run_dir)))
        return out

    monkeypatch.setattr(WeightStore, "save", spy)
    hooks = CountAtClose(run_dir)
    execute(cfg, hooks)

    assert len(hooks.counts) >= cfg.evolution.generations
    assert all(n <= bound for _, n in hooks.counts), hooks.counts
    assert all(n <= MEMBERS + N for _, n in hooks.counts), hooks.counts  # the previous population is gone
    assert most[0] <= bound, most[0]
    assert len(files(run_dir)) <= bound

    with RunStore.open(run_dir) as store:
        db = store.lineage
        rows = db.all()
        alive = {i for g in db.generations() for i in db.population(g["generation"])}
        named = {i for r in db.results() for i in r["detail"].get("ids", [])}
        named |= {r["detail"]["id"] for r in db.results() if "id" in r["detail"]}
        kept = {r.weights for r in rows if r.id in alive | named or r.operator == "member"}
        dead = [r for r in rows if r.operator != "member" and r.id not in alive | named and r.weights not in kept]
        assert dead, "the run should have offspring that died in their own generation"
        assert not {r.weights for r in dead} & set(written), "a dead offspring's weights were written"
        assert all(len(r.weights) == 64 for r in dead)  # their content hash is recorded
        for victim in (max(dead, key=lambda r: (r.generation, r.id)), min(dead, key=lambda r: r.id)):
            res = replay(store, victim.id)
            assert res.weights_equal and res.velocity_equal is not False, victim
        # a reader asking for an unwritten individual's weights gets them rebuilt, checked
        deepest = max(dead, key=lambda r: (r.generation, r.id))
        assert store.weights.load(deepest.weights).content_hash() == deepest.weights
        usage = weight_store_usage(store)
        assert usage["bound_copies"] == bound and usage["files"] == len(files(run_dir))
        assert f"= {MEMBERS} + 2 x {N} = {bound} model copies" in weight_store_line(store)


def test_a_stop_after_a_commit_before_its_deletions_resumes_exactly(tiny_full, tiny_task, tmp_path, monkeypatch):
    """Old weights go only after the new checkpoint has committed; a run stopped in between
    resumes to the uninterrupted run, and the resume removes what the stop left behind."""
    from evo_merge.engine.persistence import Persistence
    from evo_merge.runner import resume_run
    from signatures import signature

    path = factories.write_run_config(tmp_path, tiny_full, tiny_task, **EVO)
    whole = load_run_config(path, {"out": str(tmp_path / "whole")})
    execute(whole)
    cut = load_run_config(path, {"out": str(tmp_path / "cut")})
    prune, calls = Persistence.prune, [0]

    def stop_at_the_third_close(self, population, pinned=()):
        calls[0] += 1
        if calls[0] == 3:  # generation 2's checkpoint has committed; nothing deleted yet
            raise KeyboardInterrupt("stopped between the commit and the deletions")
        return prune(self, population, pinned)

    monkeypatch.setattr(Persistence, "prune", stop_at_the_third_close)
    with pytest.raises(KeyboardInterrupt):
        execute(cut)
    monkeypatch.setattr(Persistence, "prune", prune)
    with RunStore.open(cut.out) as store:
        assert store.lineage.meta("checkpoint")["generation"] == 2
    resume_run(cut.out)
    assert signature(cut.out) == signature(whole.out)
    assert files(Path(cut.out)) == files(Path(whole.out))
