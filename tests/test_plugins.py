"""The README's plugins (examples/plugins/): a merge method, an operator and a metric, each
one function or class in one file, registered, validated and used in a whole run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import factories
from evo_merge.config import load_run_config
from evo_merge.errors import EvoMergeError
from evo_merge.merge import get_merge_method
from evo_merge.plugins import load_plugins
from evo_merge.replay import replay
from evo_merge.runner import execute, prepare
from evo_merge.store import RunStore

PLUGINS = Path(__file__).resolve().parents[1] / "examples" / "plugins"
FILES = [str(PLUGINS / f) for f in ("magnitude_max.py", "extrapolate.py", "acc_norm.py")]


def config(tmp_path: Path, pop: Path, **evolution) -> Path:
    task = factories.write_task(tmp_path, metric="mc_loglik_norm")
    path = factories.write_run_config(tmp_path, pop, task, **evolution)
    data = yaml.safe_load(path.read_text())
    data["plugins"] = [os.path.relpath(f, tmp_path) for f in FILES]  # relative to the config file
    path.write_text(yaml.safe_dump(data))
    return path


EVO = {"crossover": {"methods": [{"method": "magnitude_max", "params": {"scale": 1.0}}]},
       "operators": [{"name": "extrapolate", "params": {"rate": 1.0, "t": 0.5}}]}


def test_plugin_merge_method_by_hand():
    load_plugins(FILES)
    out = get_merge_method("magnitude_max")([torch.tensor([1.0, -4.0, 2.0]), torch.tensor([-3.0, 1.0, 2.5])],
                                             torch.tensor([1.0, 0.5]), scale=2.0)
    assert out.tolist() == [-3.0, -8.0, 4.0]  # weighted: [1,-4,2] vs [-1.5,0.5,1.25] -> [-1.5,-4,2], x2
    with pytest.raises(EvoMergeError, match="parameter scale: Input should be greater than 0"):
        get_merge_method("magnitude_max").resolve_params({"scale": 0})


def test_plugin_metric_is_log_probability_per_character():
    load_plugins(FILES)
    from evo_merge.fitness.metrics import METRICS

    metric = METRICS.get("mc_loglik_norm").__new__(METRICS.get("mc_loglik_norm"))
    metric.spans, metric.lengths, metric.answers = [(0, 2)], [np.array([1, 4])], [1]
    # summed log-probs favour choice 0 (acc), per character choice 1 (acc_norm): -2/1 < -6/4
    preds = metric.from_logprobs(np.array([-2.0, -6.0]), np.array([1.0, 4.0]))
    assert preds[0].tolist() == [-2.0, -1.5] and metric.score(preds).tolist() == [1.0]


def test_a_run_uses_the_three_plugins_and_replays(tiny_full, tmp_path):
    cfg = load_run_config(config(tmp_path, tiny_full, **EVO))
    out = execute(cfg)
    with RunStore.open(out.run_dir) as store:
        rows = store.lineage.all()
        made = [r for r in rows if r.operator == "extrapolate"]
        assert len(made) == cfg.evolution.generations  # rate 1: one per generation
        assert {r.method for r in rows if r.operator == "crossover"} == {"magnitude_max"}
        assert all(replay(store, r.id).weights_equal for r in made)
        a, b = (store.weights.load(store.lineage.get(p).weights) for p in made[0].parents)
        child = store.weights.load(made[0].weights)
        torch.testing.assert_close(child.flat, 1.5 * a.flat - 0.5 * b.flat)


@pytest.mark.parametrize("evo,message", [
    ({"operators": [{"name": "extrapolate", "params": {"t": -1}}]}, "evolution.operators 'extrapolate': parameter t"),
    ({"operators": [{"name": "teleport"}]}, "unknown operator 'teleport'"),
    ({"operators": [{"name": "mutation"}]}, "operator 'mutation' plans nothing by itself"),
    ({"crossover": {"methods": [{"method": "magnitude_max", "params": {"scale": -2}}]}}, "parameter scale"),
])
def test_bad_plugin_settings_are_refused_before_the_run_exists(tiny_full, tmp_path, evo, message):
    cfg = load_run_config(config(tmp_path, tiny_full, **evo))
    with pytest.raises(EvoMergeError, match=message):
        prepare(cfg)
    assert not cfg.out.exists()


def test_a_missing_or_broken_plugin_is_one_line(tmp_path):
    with pytest.raises(EvoMergeError, match="plugin file not found"):
        load_plugins([str(tmp_path / "nope.py")])
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(EvoMergeError, match="plugin .*broken.py failed to import: RuntimeError: boom"):
        load_plugins([str(broken)])
