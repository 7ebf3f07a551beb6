"""Results a person can read: the final table (metric, individuals, the ensemble, next steps),
compositions in terms of the members, a readable lineage PNG, search plots, JSON/CSV output
and progress lines off a terminal."""

from __future__ import annotations

import csv
import io
import json
import random

import matplotlib.image
import pytest
import torch

import factories
from evo_merge.cli import output
from evo_merge.genome import Genome
from evo_merge.operators.base import build
from evo_merge.report.composition import Composer, compose
from evo_merge.report.tree import family_tree, prune
from evo_merge.report.tree_png import to_png
from evo_merge.store import Individual, LineageDB, RunStore

NAMES = ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight",
         "model.layers.1.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight", "model.norm.weight"]
PHI = {"inertia": 0.2, "cognitive": 0.3, "social": 0.4, "repel": 0.1}


@pytest.fixture()
def wide(monkeypatch):
    """Rich tables as wide as they like (no cell wrapping in captured output)."""
    monkeypatch.setattr(output.console, "_width", 400)


def flat(text: str) -> str:
    return " ".join(text.split())


def _ind(i, op, parents=(), gen=1, **kw):
    return Individual(id=i, generation=gen if op != "member" else 0, operator=op, weights=f"h{i}",
                      parents=list(parents), **kw)


# -- compositions ---------------------------------------------------------------------------------

def _history():
    """Members 0-2 and linear steps of every kind, a mutation, a TIES merge."""
    return [
        _ind(0, "member", name="m0"), _ind(1, "member", name="m1"), _ind(2, "member", name="m2"),
        _ind(3, "crossover", [0, 1], method="linear", coefficients=[0.6, 0.4]),
        _ind(4, "crossover", [3, 2], method="task_arithmetic", coefficients=[0.5, 0.7]),
        _ind(5, "composition", [4, 0], method="linear", coefficients=[0.3, 0.7, 1.0, -0.2],
             params={"groups": {"granularity": "cuts", "cuts": [1]}, "normalize": False}),
        _ind(6, "succession", [5, 3, 4, 1], params={"r": [0.1, 0.2, 0.3, 0.4], "phi": PHI, "step": 0.5}, seed=1),
        _ind(7, "crossover", [6, 3], method="linear", coefficients=[1.0, 1.0]),  # inherits 6's velocity
        _ind(8, "succession", [7, 6, 5, 0], params={"r": [0.9, 0.5, 0.2, 0.7], "phi": PHI, "step": 0.3}, seed=2),
        _ind(9, "mutation", [8], params={"mode": "gaussian", "sigma": 0.1, "weight_rate": 0.5}, seed=3),
        _ind(10, "crossover", [0, 1], method="ties", coefficients=[0.5, 0.5], params={"density": 0.5}, seed=4),
        _ind(11, "mutation", [5], params={"mode": "svd", "sigma": 0.1}, seed=5),
    ]


def test_composition_reproduces_the_built_weights_of_linear_histories():
    torch.manual_seed(0)
    members = {i: Genome.from_tensors({n: torch.randn(3, 2) for n in NAMES}, "delta") for i in range(3)}
    built, velocity = dict(members), {}
    rows = _history()
    for row in rows[3:10]:
        child = build(row, built.__getitem__, velocity.get)
        built[row.id], velocity[row.id] = child.genome, child.velocity
    composer = Composer(rows, NAMES, "delta")
    for ind_id in range(3, 9):
        form = composer.form(ind_id)
        assert form.level == "exact" and form.x is not None, ind_id
        got = built[ind_id].tensors()
        for t, name in enumerate(NAMES):
            want = sum(form.x[t, m] * members[m].tensors()[name] for m in range(3))
            assert torch.allclose(got[name], want, atol=1e-5), (ind_id, name)
    comp = compose(rows, 5, NAMES, "delta")
    labels = [label for label, _ in comp.rows]
    assert labels == ["layer 0", "layer 1", "outside layers: embed_tokens", "outside layers: norm"]
    assert comp.rows[0][1] == pytest.approx([0.3 * 0.5 * 0.6 + 0.7, 0.3 * 0.5 * 0.4, 0.3 * 0.7])
    assert comp.level == "exact" and comp.summary().startswith("exact")


def test_composition_says_when_it_is_not_linear():
    rows = _history()
    noisy = compose(rows, 9, NAMES, "delta")
    assert noisy.level == "residual" and noisy.rows and "mutation #9 added Gaussian noise" in noisy.summary()
    for ind_id, why in ((10, "crossover #10 (ties) is not a linear merge"), (11, "SVD mutation")):
        comp = compose(rows, ind_id, NAMES, "delta")
        assert comp.level == "undefined" and comp.rows == [] and comp.records() == []
        assert why in comp.summary() and "no member weights" in comp.summary()
    one = compose(rows, 3, None)  # tensor names unknown: one-group histories still add up
    assert one.rows == [("all tensors", pytest.approx([0.6, 0.4, 0.0]))]
    assert compose(rows, 5, None).level == "undefined"
    lora = compose(rows, 3, NAMES, "lora")
    assert lora.level == "approximate" and "B*A" in lora.summary()


# -- the final table, status and formats on a real run ---------------------------------------------

@pytest.fixture(scope="module")
def linear_run(tmp_path_factory, tiny_full):
    """A finished run whose crossovers are all linear and that mutates nothing."""
    root = tmp_path_factory.mktemp("linear")
    task = factories.write_task(root)
    cfg = factories.write_run_config(root, tiny_full, task, generations=2,
                                     crossover={"rate": 1.0, "methods": [{"method": "linear"}]},
                                     mutation={"rate": 0.0})
    return root, cfg


def test_run_prints_a_readable_table_and_the_best_composition(linear_run, cli, wide):
    root, cfg = linear_run
    run = root / "run"
    code, out, err = cli("run", cfg)
    assert code == 0, err
    text = flat(out)
    assert "score: tiny (accuracy: share of questions whose right choice gets the highest log-likelihood)" in text
    with RunStore.open(run) as store:
        results = {r["name"]: r for r in store.lineage.results()}
        member = store.lineage.get(results["best initial member"]["detail"]["id"])
        ens = results["top-3 ensemble"]["detail"]["ids"]
        best = results["evolved best"]["detail"]["id"]
    assert f"#{member.id} member {member.name}" in text
    assert f"top-3 ensemble: an output ensemble of #{ens[0]}, #{ens[1]}, #{ens[2]}" in text and "not one model" in text
    for step in (f"evo-merge status {run}", f"evo-merge plot {run}", f"evo-merge export {run} OUT --best"):
        assert step in text
    assert f"composition of #{best} (evolved best) in the members' task vectors" in text and "exact:" in text
    # off a terminal: plain lines for the loading and each phase
    assert "loading population, tasks and model" in text and "members (3 steps) ..." in text
    assert "members: done in" in text


def test_lineage_composition_matches_the_stored_weights(linear_run, cli):
    root, _ = linear_run
    run = root / "run"
    with RunStore.open(run) as store:
        best = store.lineage.results()
        best_id = next(r["detail"]["id"] for r in best if r["name"] == "evolved best")
        rows = store.lineage.all()
        members = {r.id: store.weights.load(r.weights).tensors() for r in rows if r.operator == "member"}
        got = store.weights.load(store.lineage.get(best_id).weights).tensors()
    code, out, err = cli("lineage", run, best_id, "--composition", "--format", "json")
    assert code == 0, err
    records = json.loads(out)
    assert records and all(r["level"] == "exact" for r in records)
    names = list(got)
    form = Composer(rows, names, "delta").form(best_id)
    order = sorted(members)
    for t, name in enumerate(names):
        want = sum(form.x[t, k] * members[m][name] for k, m in enumerate(order))
        assert torch.allclose(got[name].float(), want.float(), atol=1e-4), name
    weights = {(r["group"], r["member"]): r["weight"] for r in records}
    assert len(weights) == len(records) and {r["member"] for r in records} == {"m0", "m1", "m2"}


def test_status_table_and_records(existing_run, cli, wide):
    run, _, _ = existing_run
    code, out, err = cli("status", run)
    assert code == 0, err
    text = flat(out)
    assert "score: tiny (accuracy" in text and "output ensemble of #" in text and " member m" in text
    assert f"evo-merge export {run} OUT --best" in text
    code, out, _ = cli("status", run, "--format", "json")
    records = json.loads(out)
    results = {r["name"]: r for r in records if r["row"] == "result"}
    assert [r["generation"] for r in records if r["row"] == "generation"] == [0, 1]
    assert results["top-3 ensemble"]["kind"] == "output ensemble" and len(results["top-3 ensemble"]["ids"]) == 3
    assert results["best initial member"]["member"] in {"m0", "m1", "m2"}
    code, out, _ = cli("status", run, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(records) and {"row", "generation", "best", "name", "test"} <= set(rows[0])
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(io.StringIO(out))
    assert set(frame["row"]) == {"generation", "result"}


def test_lineage_records_and_format_errors(existing_run, cli):
    run, _, _ = existing_run
    code, out, _ = cli("lineage", run, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    with RunStore.open(run) as store:
        assert len(rows) == len(store.lineage.all())
    assert {"id", "generation", "operator", "name", "parents", "fitness", "test"} <= set(rows[0])
    assert json.loads(rows[-1]["parents"]) is not None
    code, out, _ = cli("lineage", run, "0", "--format", "json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [0]
    code, _, err = cli("lineage", run, "--composition")
    assert code == 2 and "give an ID" in err
    code, _, err = cli("status", run, "--format", "xml")
    assert code == 2 and "unknown --format 'xml'" in err


# -- pictures -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_lineage(tmp_path_factory):
    """A 30-generation run of 400 individuals: crossovers, mutations, swarm steps."""
    root = tmp_path_factory.mktemp("big")
    db = LineageDB(root / "lineage.sqlite")
    db.set_meta("config", {"seed": 0})
    rng = random.Random(0)
    pool = list(range(8))
    for i in pool:
        db.add(_ind(i, "member", name=f"expert-{i}", fitness=0.3 + 0.01 * i))
    nid = 8
    for gen in range(1, 31):
        new = []
        for _ in range(13):
            op = rng.choice(["crossover", "crossover", "composition", "mutation", "succession"])
            parents = {"mutation": 1, "succession": 4}.get(op, 2)
            ps = [rng.choice(pool) for _ in range(parents)]
            coeffs = [0.5] * len(ps) if op in ("crossover", "composition") else None
            db.add(_ind(nid, op, ps, gen=gen, method="linear" if coeffs else None, coefficients=coeffs,
                        fitness=rng.random()))
            new.append(nid)
            nid += 1
        pool = new[:10]
        db.set_population(gen, pool, {"best": 0.9, "mean": 0.5, "std": 0.3, "offspring": 13, "seconds": 1.0})
    db.close()
    return root, nid - 1


def test_a_large_family_tree_is_cut_to_a_readable_png(big_lineage, tmp_path):
    root, last = big_lineage
    db = LineageDB(root / "lineage.sqlite", readonly=True)
    try:
        tree = family_tree(db, last)
    finally:
        db.close()
    assert len(tree.nodes) > 100
    cut = prune(tree)
    assert len(cut.nodes) <= 40 and any(n.hidden for n in cut.nodes.values())
    assert all(e.parent in cut.nodes and e.child in cut.nodes for e in cut.edges)
    assert "older ancestors" in next(n.label for n in cut.nodes.values() if n.hidden)
    assert prune(tree, depth=1).nodes.keys() == {last, *tree.nodes[last].parents}
    path = to_png(tree, tmp_path / "big.png")
    height, width = matplotlib.image.imread(path).shape[:2]
    assert height < 2000 and width < 4500, (width, height)
    small = to_png(family_tree(LineageDB(root / "lineage.sqlite", readonly=True), 9), tmp_path / "s.png")
    assert small.is_file()


def test_the_metric_line_reads_the_runs_own_copy_of_each_task_spec(tmp_path):
    """The results table says what the scores are from the spec the run scored (its copy in
    ``inputs/``), not from the original path, which may since have changed."""
    from types import SimpleNamespace

    from evo_merge.report.results import run_metric_text

    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "t.yaml").write_text("name: t\nmetric: neg_loss\n")  # edited after the run started
    copy = tmp_path / "run" / "inputs" / "tasks" / "0"
    copy.mkdir(parents=True)
    (copy / "t.yaml").write_text("name: t\nmetric: exact_match\n")
    (tmp_path / "run" / "inputs" / "manifest.json").write_text(json.dumps(
        {"population": {"original": "p.yaml", "copy": "population.yaml"},
         "tasks": [{"original": str(tmp_path / "orig" / "t.yaml"), "copy": "tasks/0/t.yaml", "self_contained": True}]}))
    config = {"population": "p.yaml", "tasks": [{"spec": str(tmp_path / "orig" / "t.yaml")}], "heldout_tasks": []}
    store = SimpleNamespace(root=tmp_path / "run", config=lambda: config)
    assert run_metric_text(store) == "t (exact match: share of generated answers equal to the reference)"
