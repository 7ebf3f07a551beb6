"""Lineage family trees (text, Mermaid, DOT, PNG), the fitness plot and the inspect CLI functions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from evo_merge.cli.readers import lineage, plot
from evo_merge.errors import EvoMergeError
from evo_merge.report.fitness_plot import plot_fitness
from evo_merge.report.tree import family_tree, layers
from evo_merge.report.tree_png import to_png
from evo_merge.report.tree_text import to_dot, to_mermaid, to_text
from evo_merge.store import Individual, LineageDB

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WEIRD = 'we"ird <x> #1; a\\b {c}'

# The family of #7: members 0 1 2; 3 = crossover(0, 1); 4 = mutation(3); 5 = crossover(1, 2);
# 6 = succession moving 4 (own best 3, global best 5, worst 2); 7 = 2-group composition(6, 0).
# Member 1 is reached through 3 and through 5 (a diamond); member 0 through 3 and directly.
FAMILY = {0, 1, 2, 3, 4, 5, 6, 7}
LINKS = {(0, 3), (1, 3), (3, 4), (1, 5), (2, 5), (4, 6), (3, 6), (5, 6), (2, 6), (6, 7), (0, 7)}


def _ind(i, gen, op, parents=(), **kw):
    return Individual(id=i, generation=gen, operator=op, weights=f"h{i}", parents=list(parents), **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    db = LineageDB(root / "lineage.sqlite")
    db.set_meta("config", {"seed": 0})  # a run records its config first; readers refuse a lineage without one
    for ind in [
        _ind(0, 0, "member", name="math", fitness=0.50, test_score=0.48),
        _ind(1, 0, "member", name="code", fitness=0.40, test_score=0.41),
        _ind(2, 0, "member", name="chat", fitness=0.30),
        _ind(3, 1, "crossover", [0, 1], method="ties", coefficients=[0.6, 0.4], params={"density": 0.7},
             seed=11, fitness=0.62),
        _ind(4, 1, "mutation", [3], params={"sigma": 0.01}, seed=12, fitness=0.61),
        _ind(5, 1, "crossover", [1, 2], method="linear", coefficients=[0.5, 0.5], seed=13, fitness=0.45),
        _ind(6, 1, "succession", [4, 3, 5, 2], params={"step": 0.5}, seed=14, fitness=0.66),
        _ind(7, 2, "composition", [6, 0], method="linear", coefficients=[0.2, 0.8, 0.7, 0.3],
             params={"groups": "layers", "group_labels": ["attn", "mlp"]}, seed=15, fitness=0.835, test_score=0.84),
        # one parent in three roles: a single edge labelled with all three
        _ind(8, 2, "succession", [6, 6, 6, 2], params={"step": 0.4}, seed=16, fitness=0.67),
        # a name that needs escaping everywhere
        _ind(9, 0, "member", name=WEIRD, fitness=0.2),
        _ind(10, 1, "merge", [9, 2], method="linear", coefficients=[0.5, 0.5], fitness=0.25),
        # a dangling parent id
        _ind(11, 1, "mutation", [999], seed=17, fitness=0.1),
    ]:
        db.add(ind)
    for g, (ids, best, mean, std) in enumerate([([0, 1, 2], 0.5, 0.4, 0.08), ([3, 4, 6], 0.66, 0.63, 0.02),
                                                ([7, 8, 6], 0.835, 0.72, 0.08)]):
        db.set_population(g, ids, {"best": best, "mean": mean, "std": std, "offspring": 3, "seconds": 1.0})
    db.set_result("evolved best", 0.835, 0.84, {"id": 7})
    db.set_result("best initial member", 0.5, 0.48, {"id": 0})
    db.close()
    return root


@pytest.fixture()
def db(run_dir):
    d = LineageDB(run_dir / "lineage.sqlite")
    yield d
    d.close()


def test_family_tree_nodes_edges_and_labels(db):
    tree = family_tree(db, 7)
    assert set(tree.nodes) == FAMILY and next(iter(tree.nodes)) == 7
    assert {(e.parent, e.child) for e in tree.edges} == LINKS and len(tree.edges) == len(LINKS)
    label = {(e.parent, e.child): e.label for e in tree.edges}
    assert label[0, 3] == "0.600" and label[1, 3] == "0.400"
    assert label[3, 4] == "mutate"
    assert (label[4, 6], label[3, 6], label[5, 6], label[2, 6]) == ("moves", "own best", "global best", "repel")
    assert label[6, 7] == "mean 0.450, per-group 0.20/0.70" and label[0, 7] == "mean 0.550, per-group 0.80/0.30"
    assert tree.nodes[7].label == "#7 composition linear\nfit 0.8350 test 0.8400"
    assert tree.nodes[0].label == "#0 math\nfit 0.5000 test 0.4800"
    # succession acts within a generation: the moved individual sits below its predecessor
    rank = layers(tree)
    assert rank[0] == rank[1] == rank[2] < rank[3] < rank[4] < rank[6] < rank[7]
    # a parent in several roles is one edge
    tree8 = family_tree(db, 8)
    assert [e.label for e in tree8.edges if (e.parent, e.child) == (6, 8)] == ["moves, own best, global best"]
    with pytest.raises(EvoMergeError, match="no individual 404"):
        family_tree(db, 404)


def test_text_prints_each_ancestor_once_and_references_repeats(db):
    text = to_text(family_tree(db, 7))
    lines = text.splitlines()
    assert lines[0].startswith("#7 composition linear") and "attn=[0.200, 0.800] mlp=[0.700, 0.300]" in lines[0]
    assert "fit 0.8350 test 0.8400" in lines[0]
    for i in FAMILY:  # one full line each
        full = [ln for ln in lines if re.search(rf"(^|: )#{i} ", ln)]
        assert len(full) == 1, (i, full)
    assert "(see #1)" in text and "(see #0)" in text  # the diamond and the direct link
    for word in ("moves: #4", "own best: ", "global best: ", "repel: ", "mutate: #3", "0.600: #0", "per-group",
                 "crossover ties", "coeffs [0.600, 0.400]"):
        assert word in text, word
    assert all(ln.startswith(("#", "|", "`", " ")) for ln in lines)
    # a dangling parent is shown, not dropped
    assert "#999 (not in lineage)" in to_text(family_tree(db, 11))


def test_mermaid_has_one_node_per_ancestor_and_one_edge_per_link(db):
    out = to_mermaid(family_tree(db, 7))
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    nodes = [ln for ln in lines if re.fullmatch(r'\s*n\d+\["[^"]*"\]', ln)]
    assert {int(re.search(r"n(\d+)", ln).group(1)) for ln in nodes} == FAMILY and len(nodes) == len(FAMILY)
    assert out.count("-->") == len(LINKS)
    edges = {tuple(map(int, m)) for m in re.findall(r"n(\d+) -->(?:\|\"[^\"]*\"\|)? n(\d+)", out)}
    assert edges == LINKS
    assert 'n0 -->|"0.600"| n3' in out and 'n4 -->|"moves"| n6' in out and 'n2 -->|"repel"| n6' in out
    assert 'n7["#35;7 composition linear<br/>fit 0.8350 test 0.8400"]' in out
    weird = to_mermaid(family_tree(db, 10))
    node9 = next(ln for ln in weird.splitlines() if ln.strip().startswith("n9["))
    assert re.fullmatch(r'\s*n9\["[^"<>]*<br/>[^"<>]*"\]', node9), node9
    assert "#quot;" in node9 and "#lt;x#gt;" in node9 and "#35;1" in node9


def _strip_dot_strings(dot: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)


def test_dot_structure(db):
    out = to_dot(family_tree(db, 7))
    try:
        import pydot
    except ImportError:
        pydot = None
    if pydot is not None:
        (graph,) = pydot.graph_from_dot_data(out)
        assert len(graph.get_edges()) == len(LINKS)
    bare = _strip_dot_strings(out)
    assert '"' not in bare.replace('""', "")
    assert bare.count("{") == bare.count("}") and re.match(r"digraph lineage \{", out)
    assert out.rstrip().endswith("}")
    declared = {int(i) for i in re.findall(r"^\s*n(\d+) \[label=", out, flags=re.M)}
    assert declared == FAMILY
    edges = [tuple(map(int, m)) for m in re.findall(r"n(\d+) -> n(\d+)", out)]
    assert set(edges) == LINKS and len(edges) == len(LINKS)
    assert 'n7 [label="#7 composition linear\\nfit 0.8350 test 0.8400"' in out
    assert 'n3 -> n6 [label="own best"];' in out
    # generations 0, 1 (split by the succession step) and 2 as ranks
    assert "{ rank=same; n0; n1; n2; }" in out
    weird = to_dot(family_tree(db, 10))
    bare = _strip_dot_strings(weird)
    assert '"' not in bare.replace('""', "") and bare.count("{") == bare.count("}")
    assert 'label="#9 we\\"ird <x> #1; a\\\\b {c}\\nfit 0.2000"' in weird


def test_png_files(db, tmp_path):
    for ind_id in (7, 8, 11, 0):
        path = to_png(family_tree(db, ind_id), tmp_path / "sub" / f"tree-{ind_id}.png")
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name.endswith(".tmp")]


def test_plot_fitness(db, tmp_path):
    path = plot_fitness(db, tmp_path / "fitness.png", "demo")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    (tmp_path / "empty").mkdir()
    empty = LineageDB(tmp_path / "empty" / "lineage.sqlite")
    try:
        with pytest.raises(EvoMergeError, match=r"no generations recorded in .*empty yet"):
            plot_fitness(empty, tmp_path / "never.png", "empty")
    finally:
        empty.close()
    assert not (tmp_path / "never.png").exists()


@pytest.fixture(scope="module")
def app2() -> typer.Typer:
    app = typer.Typer()
    app.command()(lineage)
    app.command()(plot)
    return app


def _one_line_error(result, match: str) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, EvoMergeError), result.output
    msg = str(result.exception)
    assert "\n" not in msg and match in msg, msg
    return msg


def test_cli_lineage_formats(app2, run_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app2, ["lineage", str(run_dir), "7", "--format", "png"])
    assert res.exit_code == 0, res.output
    assert (run_dir / "lineage-7.png").read_bytes().startswith(PNG_MAGIC) and "lineage-7.png" in res.output
    res = runner.invoke(app2, ["lineage", str(run_dir), "7", "--format", "png", "--out", str(tmp_path / "t.png")])
    assert res.exit_code == 0 and (tmp_path / "t.png").read_bytes().startswith(PNG_MAGIC)
    res = runner.invoke(app2, ["lineage", str(run_dir), "7", "--format", "text"])
    assert res.exit_code == 0 and res.output.startswith("#7 composition") and "(see #1)" in res.output
    res = runner.invoke(app2, ["lineage", str(run_dir), "7", "--format", "mermaid", "--out", str(tmp_path / "t.mmd")])
    assert res.exit_code == 0 and (tmp_path / "t.mmd").read_text().startswith("flowchart TD")
    res = runner.invoke(app2, ["lineage", str(run_dir), "7", "--format", "dot"])
    assert res.exit_code == 0 and res.output.startswith("digraph lineage {")
    res = runner.invoke(app2, ["lineage", str(run_dir)])  # the table of every individual
    assert res.exit_code == 0 and "individuals" in res.output and "math" in res.output
    res = runner.invoke(app2, ["lineage", str(run_dir), "7"])
    assert res.exit_code == 0 and "lineage of 7" in res.output


def test_cli_lineage_errors(app2, run_dir, tmp_path):
    runner = CliRunner()
    msg = _one_line_error(runner.invoke(app2, ["lineage", str(run_dir), "7", "--format", "svg"]), "unknown --format")
    assert all(f in msg for f in ("table", "text", "mermaid", "dot", "png"))
    _one_line_error(runner.invoke(app2, ["lineage", str(run_dir), "--format", "mermaid"]), "give an ID")
    _one_line_error(runner.invoke(app2, ["lineage", str(run_dir), "404", "--format", "dot"]), "no individual 404")
    _one_line_error(runner.invoke(app2, ["lineage", str(run_dir), "404"]), "no individual 404")
    _one_line_error(runner.invoke(app2, ["lineage", str(tmp_path), "7", "--format", "text"]), "not a run directory")
    assert not (run_dir / "lineage-404.png").exists()


def test_cli_plot(app2, run_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app2, ["plot", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert (run_dir / "fitness.png").read_bytes().startswith(PNG_MAGIC) and "fitness.png" in res.output
    res = runner.invoke(app2, ["plot", str(run_dir), "--out", str(tmp_path / "f.png")])
    assert res.exit_code == 0 and (tmp_path / "f.png").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    db = LineageDB(empty / "lineage.sqlite")
    db.set_meta("config", {"seed": 0})  # a run stopped while it scored its members
    db.close()
    _one_line_error(runner.invoke(app2, ["plot", str(empty)]), "no generations recorded")
    _one_line_error(runner.invoke(app2, ["plot", str(tmp_path / "nope")]), "not a run directory")
