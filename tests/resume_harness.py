"""Shared pieces of the resume tests: a small demo config and a run's full signature."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "skills.yaml"

# 3 generations, succession, and a coefficient search in generation 2: every phase a
# kill can land in (members, offspring, search, succession, report)
OVERRIDES = {"pool.backend": "local", "evolution.generations": 3, "evolution.population_size": 6,
             "evolution.succession.rate": 0.5,
             "evolution.search": {"every": 2, "parents": 3, "budget": 8, "optimizer": "NGOpt", "num_workers": 2}}


def write_config(tmp: Path) -> Path:
    """A config file equal to skills.yaml with OVERRIDES applied (for subprocess runs)."""
    import yaml

    data = yaml.safe_load(DEMO.read_text())
    data["population"] = str(ROOT / "populations" / "demo-lora.yaml")
    data["tasks"] = [{"spec": str(ROOT / "fitness" / "demo-prev-dec-add.yaml"), "weight": 1.0}]
    for dotted, value in OVERRIDES.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = tmp / "resume-test.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
