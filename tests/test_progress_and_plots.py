"""Progress lines off a terminal, the plot of a search run, and compare's progress and records."""

from __future__ import annotations

import io
import json

import yaml
from rich.console import Console

import factories
from evo_merge.cli import output
from evo_merge.store import Individual, LineageDB


def _ind(i, op, parents=(), gen=1, **kw):
    return Individual(id=i, generation=gen if op != "member" else 0, operator=op, weights=f"h{i}",
                      parents=list(parents), **kw)


def test_plot_of_a_search_run_draws_the_search(tmp_path, cli):
    db = LineageDB(tmp_path / "lineage.sqlite")
    db.set_meta("config", {"seed": 0})
    db.set_meta("kind", "search")
    for i in range(3):
        db.add(_ind(i, "member", name=f"m{i}", fitness=0.4))
    for g in (0, 1):
        db.set_population(g, [0, 1, 2], {"best": 0.5, "mean": 0.2, "std": 0.4, "offspring": 3, "seconds": 1.0})
    sid = db.add_search(1, [0, 1, 2], {"optimizer": "NGOpt", "budget": 5}, 0, None)
    for k in range(5):
        db.record_ask(sid, k, {"coefficients": [0.1 * k, 0.2, 0.3], "params": {}})
        db.record_tell(sid, k, told=k, objective=-0.1 * k, fitness=0.1 * k, loss=None, l1=0.0, task_scores={},
                       seconds=0.1, worker="w")
    db.set_result("best initial member", 0.4, 0.4, {"id": 0})
    db.close()
    code, out, err = cli("plot", tmp_path)
    assert code == 0, err
    assert "search.png" in out and (tmp_path / "search.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "fitness.png").exists()
    code, out, _ = cli("candidates", tmp_path, "--format", "json")
    records = json.loads(out)
    assert [r["idx"] for r in records] == list(range(5)) and records[2]["coefficients"] == [0.2, 0.2, 0.3]


# -- progress ------------------------------------------------------------------------------------------

def test_plain_progress_lines_off_a_terminal():
    from evo_merge.progress import RichHooks

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    with RichHooks(console, 2) as hooks:
        hooks.phase("starting Ray (2 workers)", None)
        hooks.phase("members", 3)
        for _ in range(3):
            hooks.advance()
        hooks.phase("test split", 2)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "starting Ray (2 workers) ..." and lines[1].startswith("starting Ray (2 workers): done in")
    assert lines[2] == "members (3 steps) ..." and lines[3].startswith("members: done in") and "3/3" in lines[3]
    assert lines[-1].startswith("test split: done in")
    term = Console(file=io.StringIO(), force_terminal=True, width=100)
    with RichHooks(term, 2) as hooks:  # on a terminal: a spinner for a phase of unknown size, then bars
        assert not hooks.plain
        hooks.phase("starting Ray (2 workers)", None)
        hooks.phase("members", 3)
        hooks.advance()
    plain = output.EvoConsole(file=io.StringIO(), force_terminal=False)
    with plain.status("loading population") as status:
        status.update("still loading")
    assert plain.file.getvalue().splitlines()[0] == "loading population ..."
    assert plain.file.getvalue().splitlines()[-1].startswith("still loading: done in")


def test_compare_shows_progress_and_writes_records(tmp_path, tiny_full, cli):
    task = factories.write_task(tmp_path)
    base = factories.write_run_config(tmp_path, tiny_full, task, generations=1)
    cfg = {"base": str(base), "out": str(tmp_path / "cmp"), "seeds": [0, 1], "budget": 2,
           "methods": ["best member", "uniform merge"]}
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = cli("compare", path, "--format", "json")
    assert code == 0, err
    assert "run 1/2: base: best member, seed 0" in err and "run 2/2: base: best member, seed 1" in err
    records = json.loads(out)
    assert [r["method"] for r in records] == ["best member", "uniform merge"] and records[0]["seeds"] == 2
