"""The hard benchmark: its builder (quick mode, and the real population end to end) and its
committed task data; on it, evolution must beat the static merges on the held-out split."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "populations"))

import build_hard  # noqa: E402
import write_hard_tasks  # noqa: E402
from hard_skills import FAMILIES, SKILLS  # noqa: E402


def test_quick_build_is_deterministic_and_stacks_two_skills_per_expert(tmp_path):
    build_hard.build(tmp_path / "a", seed=0, quick=True)
    build_hard.build(tmp_path / "b", seed=0, quick=True)
    first = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert first == json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert len(first["experts"]) == 8 and len(first["sha256"]) == 1 + 8
    from safetensors.torch import load_file

    one = load_file(str(tmp_path / "a" / "lora" / "fst-dif" / "adapter_model.safetensors"))
    assert {int(re.search(r"layers\.(\d+)\.", k).group(1)) for k in one} == {0, 1, 2, 3}  # one adapter, all layers


def test_every_expert_pairs_skills_of_two_families_and_every_skill_is_carried_twice():
    families = {name: fam for fam in FAMILIES for name in fam.skills}
    carried = [s for pair in build_hard.EXPERTS.values() for s in pair]
    assert sorted(carried) == sorted(list(SKILLS) * 2)
    assert all(families[lo] is not families[hi] for lo, hi in build_hard.EXPERTS.values())


def test_committed_task_data_is_what_the_writer_writes(tmp_path):
    for path in write_hard_tasks.write_all(tmp_path):
        assert path.read_bytes() == (ROOT / "fitness" / "data" / path.name).read_bytes(), path.name


@pytest.mark.slow
def test_evolution_beats_the_static_merges_on_target_c(tmp_path):
    """The real population (built once, about 2 minutes on 2 cores) and the demo's evolution on
    target C: the evolved best beats the best member, the uniform merge and the oracle average
    of the relevant experts on the held-out split."""
    from evo_merge.config import load_run_config
    from evo_merge.runner import execute, execute_merge

    cfg = load_run_config(ROOT / "configs" / "demo.yaml", {"out": str(tmp_path / "run"), "pool.backend": "local"})
    rows = {r["name"]: r for r in execute(cfg).rows}
    relevant = load_run_config(ROOT / "configs" / "demo.yaml", {"out": str(tmp_path / "avg"), "pool.backend": "local"})
    avg = {r["name"]: r for r in execute_merge(relevant, list(build_hard.EXPERTS)).rows}["relevant average"]
    evolved = rows["evolved best"]["test"]
    print(f"\nhard-c test: best member {rows['best initial member']['test']:.3f}  uniform "
          f"{rows['uniform merge']['test']:.3f}  relevant average {avg['test']:.3f}  evolved {evolved:.3f}")
    assert evolved > max(rows["best initial member"]["test"], rows["uniform merge"]["test"], avg["test"]) + 0.15
    assert torch.isfinite(torch.tensor(evolved))
