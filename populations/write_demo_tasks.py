"""Write the demo target tasks' data: fitness/data/<task>.jsonl, each mixing 2-3 skills.

Deterministic: running it again rewrites the committed files byte for byte.

    python populations/write_demo_tasks.py [FITNESS_DIR]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Sequence

from skills import SKILLS, Skill, gen_example, mc_example

ROWS = 600
FITNESS_DIR = Path(__file__).resolve().parent.parent / "fitness"

# task name -> (skills it mixes in equal shares, multiple choice?)
TASKS: dict[str, tuple[tuple[str, ...], bool]] = {
    "add_next": (("add", "next"), True),
    "sub_inc": (("sub", "inc"), True),
    "prev_dec_add": (("prev", "dec", "add"), True),
    "gen_next_dec": (("next", "dec"), False),
}


def task_rows(skills: Sequence[Skill], multiple_choice: bool, seed: int, rows: int = ROWS) -> list[dict]:
    """``rows`` rows, the skills taking turns, then shuffled."""
    rng = random.Random(seed)
    make = mc_example if multiple_choice else gen_example
    out = [make(skills[i % len(skills)], rng) for i in range(rows)]
    rng.shuffle(out)
    return out


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def write_all(fitness_dir: Path = FITNESS_DIR) -> list[Path]:
    """Write every task's jsonl under ``fitness_dir/data``; returns the paths."""
    paths = []
    for seed, (name, (skills, multiple_choice)) in enumerate(TASKS.items()):
        path = fitness_dir / "data" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(task_rows([SKILLS[s] for s in skills], multiple_choice, seed)).encode())
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else FITNESS_DIR):
        print(p)
