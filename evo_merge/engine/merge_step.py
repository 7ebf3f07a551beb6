"""A fixed merge of named members as a whole run (the oracle baseline of ``evo-merge compare``):
score the members, merge the named ones uniformly, report it on the test split."""

from __future__ import annotations

import time

from evo_merge.engine.core import Engine
from evo_merge.errors import EvoMergeError
from evo_merge.operators.recipe import Recipe


def run_fixed_merge(engine: Engine, names: list[str], resume: bool = False) -> int:
    if resume:
        engine.resume()
    else:
        engine.initialize()
    ids = {engine.db.get(i).name: i for i in engine.state.member_ids}
    unknown = [n for n in names if n not in ids]
    if unknown or not names:
        raise EvoMergeError(f"relevant members {unknown or names} are not members of the population "
                            f"(members: {', '.join(ids)})")
    start = time.perf_counter()
    params = {"lora_mode": engine.lora_mode} if engine.lora_mode else {}
    recipe = Recipe("merge", [ids[n] for n in names], "linear", [1.0] * len(names), params, engine.planner.seed())
    child = engine.execute("relevant average", 1, [recipe])[0]
    engine.close_generation(1, list(engine.state.member_ids) + [child], 1, time.perf_counter() - start)
    return child
