"""Write the hard benchmark's target tasks: fitness/data/hard_<task>.jsonl, multiple choice and
generation, each mixing two to four skills of ``hard_skills.py``.

Deterministic: running it again rewrites the committed files byte for byte.

    python populations/write_hard_tasks.py [FITNESS_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from hard_skills import SKILLS
from write_demo_tasks import render, task_rows

ROWS = 600
FITNESS_DIR = Path(__file__).resolve().parent.parent / "fitness"

# task -> the skills it mixes in equal shares
TARGETS: dict[str, tuple[str, ...]] = {
    "a": ("fst", "mul"),
    "b": ("lst", "dif", "sq"),
    "c": ("fst", "mul", "rot", "neg"),
}


def write_all(fitness_dir: Path = FITNESS_DIR) -> list[Path]:
    paths = []
    for seed, (name, skills) in enumerate(TARGETS.items(), start=100):
        for multiple_choice, suffix in ((True, ""), (False, "_gen")):
            path = fitness_dir / "data" / f"hard_{name}{suffix}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(render(task_rows([SKILLS[s] for s in skills], multiple_choice,
                                              seed + (0 if multiple_choice else 50), ROWS)).encode())
            paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else FITNESS_DIR):
        print(p)
