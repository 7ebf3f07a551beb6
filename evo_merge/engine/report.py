"""The final report: test-split scores of the best member, the uniform merge, the evolved
(or searched) best and the top-k output ensemble, recorded as the run's results."""

from __future__ import annotations

from evo_merge.engine.core import Engine
from evo_merge.pool.executor import run_all
from evo_merge.pool.jobs import Job


def report(engine: Engine, population: list[int]) -> list[dict]:
    """Score on the test split: best initial member, uniform merge, evolved best, top-k ensemble."""
    uniform_id = _uniform_merge(engine)
    best_member = max(engine.state.member_ids, key=engine.state.fitness_of)
    ranked = engine.state.ranked(population)
    top_k = ranked[: engine.evo.ensemble.top_k]
    entries = [("best initial member", best_member), ("uniform merge", uniform_id), ("evolved best", ranked[0])]
    engine.hooks.phase("test split", len(entries) + 2 * len(top_k))
    rows = _test_rows(engine, entries)
    rows.append(_ensemble_row(engine, top_k))
    return rows


def search_report(engine: Engine, result: int, label: str = "searched composition") -> list[dict]:
    """Test split: best member, uniform merge of all members, the searched composition."""
    uniform_id = _uniform_merge(engine)
    best_member = max(engine.state.member_ids, key=engine.state.fitness_of)
    entries = [("best initial member", best_member), ("uniform merge", uniform_id), (label, result)]
    engine.hooks.phase("test split", len(entries))
    return _test_rows(engine, entries)


def _splits(engine: Engine) -> list[str]:
    return ["test", "heldout"] if engine.heldout else ["test"]


def _uniform_merge(engine: Engine) -> int:
    return engine.execute("uniform merge", engine.db.last_generation() or 0, [engine.planner.uniform_merge()])[0]


def _ensemble_row(engine: Engine, top_k: list[int]) -> dict:
    """The top-k output ensemble: members' predictions combined per example, as a scheduled job."""
    hashes = [engine.state[i].weights for i in top_k]
    splits = ["fitness"] + _splits(engine)

    results = run_all(engine.executor, [Job(ensemble=hashes, split=s) for s in splits])
    for _ in range(2 * len(top_k)):  # each member scored on the fitness and the test split
        engine.hooks.advance()
    ev = {s: r.evaluation for s, r in zip(splits, results)}
    label = f"top-{len(top_k)} ensemble"
    detail = {"ids": top_k, "test_task_scores": ev["test"].task_scores}
    row = {"name": label, "ids": top_k, "fitness": ev["fitness"].score, "test": ev["test"].score,
           "test_tasks": ev["test"].task_scores}
    if engine.heldout:
        detail.update(heldout=ev["heldout"].score, heldout_task_scores=ev["heldout"].task_scores)
        row.update(heldout=ev["heldout"].score, heldout_tasks=ev["heldout"].task_scores)
    engine.db.set_result(label, ev["fitness"].score, ev["test"].score, detail)
    return row


def _test_rows(engine: Engine, entries: list[tuple[str, int]]) -> list[dict]:
    """Score individuals on the test split (and held-out tasks) and record them as report rows."""
    splits = _splits(engine)
    jobs = [Job(weights=engine.state[ind].weights, split=split) for _, ind in entries for split in splits]
    results = iter(run_all(engine.executor, jobs, on_done=lambda _: engine.hooks.advance()))
    rows = []
    for label, ind in entries:
        ev = next(results).evaluation
        fitness = engine.state.fitness_of(ind)
        detail = {"id": ind, "test_task_scores": ev.task_scores}
        row = {"name": label, "ids": [ind], "fitness": fitness, "test": ev.score, "test_tasks": ev.task_scores}
        if engine.heldout:
            held = next(results).evaluation
            detail.update(heldout=held.score, heldout_task_scores=held.task_scores)
            row.update(heldout=held.score, heldout_tasks=held.task_scores)
        engine.db.set_test(ind, ev.score, ev.task_scores)
        engine.db.set_result(label, fitness, ev.score, detail)
        rows.append(row)
    return rows
