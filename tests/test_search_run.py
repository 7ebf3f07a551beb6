"""`evo-merge search` end to end on the demo population: quality, records, resume, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from evo_merge.config import load_run_config
from evo_merge.engine import EngineHooks
from evo_merge.runner import execute, execute_search, prepare
from evo_merge.store import RunStore
from signatures import signature

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo-search.yaml"


def config(tmp_path: Path, name: str = "run", **search):
    overrides = {"out": str(tmp_path / name), "pool.backend": "local", "search.budget": 30,
                 **{f"search.{k}": v for k, v in search.items()}}
    return load_run_config(CONFIG, overrides)


@pytest.fixture(scope="module")
def prepared():
    return prepare(load_run_config(CONFIG, {"pool.backend": "local"}))


def test_search_beats_uniform_merge_and_best_member_and_records_everything(tmp_path, cli):
    code, out, err = cli("search", CONFIG, "--out", tmp_path / "run", "--backend", "local", "--budget", "30")
    assert code == 0, err
    assert "searched composition" in out and "best-so-far curve" in out
    store = RunStore.open(tmp_path / "run")
    rows = {r["name"]: r for r in store.lineage.results()}
    searched = rows["searched composition"]
    print(f"\nsearch (budget 30): test best member {rows['best initial member']['test_score']:.3f}  "
          f"uniform {rows['uniform merge']['test_score']:.3f}  searched {searched['test_score']:.3f}")
    assert searched["test_score"] > rows["uniform merge"]["test_score"] + 0.2
    assert searched["test_score"] > rows["best initial member"]["test_score"] + 0.2
    ind = store.lineage.get(searched["detail"]["id"])
    assert ind.operator == "composition" and len(ind.coefficients) == 6 and sorted(ind.parents) == list(range(6))
    (search,) = store.lineage.searches()
    cands = store.lineage.search_candidates(search["id"])
    assert len(cands) == 30 and all(c["fitness"] is not None for c in cands)
    assert all(c["rows"] is None for c in cands)  # racing (on by default) is evolution's: every row here
    best = max(cands, key=lambda c: (c["fitness"], -c["idx"]))
    assert ind.coefficients == best["value"]["coefficients"] and ind.fitness == pytest.approx(best["fitness"])
    assert (tmp_path / "run" / f"search-{search['id']}.png").read_bytes()[:4] == b"\x89PNG"
    store.close()
    code, out, _ = cli("candidates", tmp_path / "run", "--top", "3")
    assert code == 0 and out.count("\n") > 5


class CrashAfter(EngineHooks):
    """Raises in the middle of the search, as a killed process would stop."""

    def __init__(self, n: int):
        self.n, self.in_search = n, False

    def phase(self, name: str, total: int) -> None:
        self.in_search = name.startswith("search")

    def advance(self) -> None:
        if self.in_search:
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt("simulated crash")


def test_interrupted_search_resumes_to_the_uninterrupted_result(tmp_path, prepared, cli):
    whole = execute_search(config(tmp_path, "whole", num_workers=2), prepared=prepared)
    cfg = config(tmp_path, "cut", num_workers=2)
    with pytest.raises(KeyboardInterrupt):
        execute_search(cfg, CrashAfter(13), prepared=prepared)
    code, _, err = cli("search", CONFIG, "--out", tmp_path / "cut", "--backend", "local", "--budget", "30",
                       "--num-workers", "3", "--resume")
    assert code == 2 and err.count("\n") == 1
    assert "search.num_workers was 2, now 3" in err
    code, _, err = cli("search", CONFIG, "--out", tmp_path / "cut", "--backend", "local", "--budget", "30")
    assert code == 2 and "--resume" in err
    resumed = execute_search(cfg, prepared=prepared, resume=True)
    assert signature(resumed.run_dir) == signature(whole.run_dir)
    code, _, err = cli("search", CONFIG, "--out", tmp_path / "cut", "--backend", "local", "--budget", "30",
                       "--num-workers", "2", "--resume")
    assert code == 2 and "already finished" in err


@pytest.mark.parametrize("args,message", [
    (["--optimizer", "NGOptt"], "unknown Nevergrad optimizer 'NGOptt' (did you mean NGOpt"),
    (["--objective", "accuracy"], "--objective: Input should be 'fitness' or 'loss' (got 'accuracy')"),
    (["--granularity", "filters"], "granularity 'filters' needs a non-empty filters list"),
])
def test_bad_search_settings_give_one_line_errors(tmp_path, cli, args, message):
    code, out, err = cli("search", CONFIG, "--out", tmp_path / "run", "--backend", "local", *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_bad_bounds_in_the_config_file(tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text().replace("bounds: [-1.5, 1.5]", "bounds: [1.5, -1.5]")
                   .replace("../", str(ROOT) + "/"))
    code, _, err = cli("search", bad, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1, err
    assert "search: bounds must be two finite numbers, lower below upper; got [1.5, -1.5]" in err


def test_loss_objective_per_layer_groups_and_searched_density(tmp_path, prepared):
    cfg = config(tmp_path, objective="loss", granularity="layers", layer_groups=2, budget=8, method="dare_linear",
                 params={"density": [0.3, 1.0]})
    execute_search(cfg, prepared=prepared)
    store = RunStore.open(cfg.out)
    cands = store.lineage.search_candidates(1)
    assert all(c["loss"] > 0 and c["objective"] == pytest.approx(c["loss"]) for c in cands)
    assert all(len(c["value"]["coefficients"]) == 6 * 2 and 0.3 <= c["value"]["params"]["density"] <= 1.0
               for c in cands)
    result = store.lineage.get(store.lineage.searches()[0]["result"])
    assert result.params["group_labels"] == ["layers 0-0", "layers 1-1"]
    store.close()


def test_search_as_a_crossover_inside_evolution(tmp_path):
    overrides = {"out": str(tmp_path / "evo"), "pool.backend": "local", "evolution.generations": 2,
                 "evolution.search": {"every": 2, "parents": 3, "budget": 6, "optimizer": "OnePlusOne"}}
    outcome = execute(load_run_config(ROOT / "configs" / "skills.yaml", overrides))
    store = RunStore.open(outcome.run_dir)
    (search,) = store.lineage.searches()
    child = store.lineage.get(search["result"])
    assert search["generation"] == 2 and child.generation == 2 and child.operator == "composition"
    assert len(child.parents) == 3 and len(store.lineage.search_candidates(search["id"])) == 6
    store.close()
