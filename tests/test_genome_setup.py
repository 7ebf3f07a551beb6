"""GENOME's setup as shipped files: the population spec, its lm-eval tasks and the run config
load and validate offline (nothing is fetched)."""

from __future__ import annotations

from pathlib import Path

from evo_merge.config import load_run_config
from evo_merge.fitness.tasks import TaskSpec
from evo_merge.population import PopulationSpec
from evo_merge.checks import check_operators
from evo_merge.yamlfile import load_model

ROOT = Path(__file__).resolve().parents[1]
EVAL_DOCS = {"mmlu_high_school_mathematics": 270, "gsm8k": 1319, "arc_challenge": 1172}  # their test splits


def test_population_tasks_and_config_validate_offline():
    pop = load_model(PopulationSpec, ROOT / "populations" / "genome-gemma2-2b.yaml", "population spec")
    assert pop.kind == "lora" and pop.base_model == "google/gemma-2-2b-it" and len(pop.members) == 10
    cfg = load_run_config(ROOT / "configs" / "genome-gemma2.yaml")
    check_operators(cfg)
    assert cfg.population == ROOT / "populations" / "genome-gemma2-2b.yaml"
    evo = cfg.evolution
    assert (evo.population_size, evo.crossover.rate, evo.mutation.rate, evo.mutation.weight_rate,
            evo.mutation.sigma, evo.mutation.sigma_mode) == (10, 0.8, 0.15, 0.01, 0.01, "absolute")
    assert evo.succession.enabled and evo.ensemble.top_k == 3 and evo.init == "pairs"
    for ref in cfg.tasks:
        spec = load_model(TaskSpec, ref.spec, "task spec")
        assert spec.lm_eval is not None and spec.metric == "lm_eval" and spec.fitness_samples == 200
        assert spec.fitness_samples + spec.test_samples <= EVAL_DOCS[spec.lm_eval.task]  # the split has them
    assert abs(sum(t.weight for t in cfg.tasks) - 1.0) < 1e-9
