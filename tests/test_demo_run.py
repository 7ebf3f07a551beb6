"""End to end on the real demo population: evolution beats the best initial member."""

from pathlib import Path

import pytest

from evo_merge.config import load_run_config
from evo_merge.runner import execute
from evo_merge.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("population", ["demo-lora", "demo-full"])
def test_evolved_best_beats_best_initial_member(population, tmp_path):
    overrides = {"out": str(tmp_path / "run"), "population": str(ROOT / "populations" / f"{population}.yaml"),
                 "evolution.generations": 3, "evolution.succession.rate": 0.5, "pool.backend": "local"}
    cfg = load_run_config(ROOT / "configs" / "skills.yaml", overrides)
    outcome = execute(cfg)
    rows = {r["name"]: r for r in outcome.rows}
    best_member, evolved = rows["best initial member"], rows["evolved best"]
    print(f"\n{population}: fitness set  best member {best_member['fitness']:.4f}  "
          f"uniform {rows['uniform merge']['fitness']:.4f}  evolved {evolved['fitness']:.4f}")
    print(f"{population}: test split    best member {best_member['test']:.4f}  "
          f"uniform {rows['uniform merge']['test']:.4f}  evolved {evolved['test']:.4f}")
    assert evolved["fitness"] > best_member["fitness"] + 0.1
    store = RunStore.open(outcome.run_dir)
    best = store.lineage.get(evolved["ids"][0])
    assert best.operator != "member" and best.test_score == pytest.approx(evolved["test"])
    lineage = store.lineage.ancestors(best.id)
    assert {a.operator for a in lineage} & {"crossover"} and any(a.operator == "member" for a in lineage)
    store.close()
