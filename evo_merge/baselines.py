"""The methods ``evo-merge compare`` runs: each one a function from the base run config to
either an evolution run or a coefficient search, plus the report row that scores it.

All of them use the base config's population, tasks, fitness/test split and seed, so
their rows are comparable. A new baseline is one registered function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from evo_merge.registry import Registry


@dataclass
class MethodPlan:
    """How to run a method: ``kind`` and the dotted config overrides, and which report row is its score."""

    kind: Literal["run", "search", "merge"]
    overrides: dict[str, Any] = field(default_factory=dict)
    row: str = "evolved best"


Planner = Callable[[int], MethodPlan]  # the search budget -> plan
METHODS: Registry[Planner] = Registry("comparison method")


def _search(method: str, budget: int, **extra: Any) -> MethodPlan:
    overrides = {"search.method": method, "search.budget": budget, "search.parents": "all",
                 **{f"search.{k}": v for k, v in extra.items()}}
    return MethodPlan("search", overrides, row="searched composition")


@METHODS.register("best member")
def best_member(budget: int) -> MethodPlan:
    """The fittest single member (chosen on the fitness set)."""
    return MethodPlan("search", {"search.budget": 1}, row="best initial member")


@METHODS.register("uniform merge")
def uniform_merge(budget: int) -> MethodPlan:
    """The plain average of all members."""
    return MethodPlan("search", {"search.budget": 1}, row="uniform merge")


@METHODS.register("task arithmetic")
def task_arithmetic(budget: int) -> MethodPlan:
    """Sum of the members' task vectors, one coefficient each, tuned by Nevergrad on the fitness set."""
    return _search("task_arithmetic", budget, bounds=[0.0, 1.5])


@METHODS.register("TIES")
def ties(budget: int) -> MethodPlan:
    """TIES merging with tuned coefficients and density."""
    return _search("ties", budget, bounds=[0.0, 1.5], params={"density": [0.1, 1.0]})


@METHODS.register("DARE-TIES")
def dare_ties(budget: int) -> MethodPlan:
    """DARE-TIES with tuned coefficients and density (normalized, kept values rescaled by 1/density:
    the settings of the figures in BENCHMARKS.md; mergekit's defaults differ)."""
    return _search("dare_ties", budget, bounds=[0.0, 1.5],
                   params={"density": [0.1, 1.0], "normalize": True, "rescale": "inverse_density"})


@METHODS.register("relevant average")
def relevant_average(budget: int) -> MethodPlan:
    """The oracle: the plain average of the members the compare config names as relevant to the
    target (``relevant:``), e.g. the experts of the skills it mixes."""
    return MethodPlan("merge", {}, row="relevant average")


@METHODS.register("LoraHub")
def lorahub(budget: int) -> MethodPlan:
    """LoraHub: weighted sum of the adapters' factors (A and B composed separately, as LoraHub
    does), NGOpt from zeros in [-1.5, 1.5], minimising the answers' cross-entropy on the
    fitness set + 0.05 x mean |w|."""
    plan = _search("task_arithmetic", budget, bounds=[-1.5, 1.5], init="zeros", l1=0.05, optimizer="NGOpt",
                   objective="loss")
    plan.overrides["lora.mode"] = "factors"
    return plan


@METHODS.register("per-layer task arithmetic")
def per_layer_task_arithmetic(budget: int) -> MethodPlan:
    """Not in the usual baseline set: one coefficient per member per layer (mergekit-evolve's
    granularity), tuned by Nevergrad; a static merge, but a much larger search space."""
    return _search("task_arithmetic", budget, bounds=[0.0, 1.5], granularity="layers", layer_groups=None)


# GENOME's own settings (anchors.md), run through this code: LoRA factors averaged separately,
# fitness-proportional pairs, TIES/linear, absolute Gaussian mutation on 1% of weights, no stall
# rule; every offspring scored on every row, as GENOME (and M2N2, Model Swarms) do
GENOME_SETTINGS: dict[str, Any] = {
    "lora.mode": "factors", "evolution.search": None, "evolution.operators": [],
    "evolution.crossover": {"rate": 0.8, "num_parents": 2, "parent_selection": "roulette",
                            "coefficients": "fitness", "methods": [{"method": "ties", "params": {"density": 0.7}},
                                                                   {"method": "linear"}]},
    "evolution.mutation": {"rate": 0.15, "mode": "gaussian", "weight_rate": 0.01, "sigma": 0.01,
                           "sigma_mode": "absolute"},
    "evolution.selection": {"method": "tournament", "elite_fraction": 0.1, "tournament_size": 3},
    "evolution.stall": {"enabled": False}, "evolution.succession.enabled": False,
    "evolution.racing.enabled": False}


@METHODS.register("Model Swarms")
def model_swarms(budget: int) -> MethodPlan:
    """Particle swarm over the members' LoRA factors: swarm steps only (no crossover, no mutation)."""
    return MethodPlan("run", {**GENOME_SETTINGS, "evolution.crossover.rate": 0.0, "evolution.mutation.rate": 0.0,
                              "evolution.succession.enabled": True, "evolution.succession.rate": 1.0})


@METHODS.register("GENOME")
def genome(budget: int) -> MethodPlan:
    """GENOME's settings through this code: its crossover, mutation and selection, no succession."""
    return MethodPlan("run", dict(GENOME_SETTINGS))


@METHODS.register("GENOME+")
def genome_plus(budget: int) -> MethodPlan:
    """GENOME+: GENOME's settings with succession (swarm steps), its top-k ensemble."""
    return MethodPlan("run", {**GENOME_SETTINGS, "evolution.succession.enabled": True}, row="ensemble")


@METHODS.register("M2N2")
def m2n2(budget: int) -> MethodPlan:
    """M2N2: split-point crossover of attraction-chosen pairs, fitness sharing, no succession."""
    return MethodPlan("run", {"evolution.crossover.split_point": 1.0, "evolution.crossover.num_parents": 2,
                              "evolution.crossover.parent_selection": "attraction",
                              "evolution.selection.method": "sharing", "evolution.succession.enabled": False,
                              "evolution.stall.enabled": False, "evolution.search": None,
                              "evolution.racing.enabled": False})


@METHODS.register("evo-merge")
def evo_merge(budget: int) -> MethodPlan:
    """The base config's evolution as it stands (its evolved best)."""
    return MethodPlan("run", {})


@METHODS.register("evo-merge ensemble")
def evo_merge_ensemble(budget: int) -> MethodPlan:
    """The base config's evolution, its top-k output ensemble (not one exportable model)."""
    return MethodPlan("run", {}, row="ensemble")


DEFAULT_METHODS = ["best member", "uniform merge", "task arithmetic", "TIES", "DARE-TIES", "LoraHub",
                   "Model Swarms", "GENOME", "GENOME+", "M2N2", "evo-merge"]
