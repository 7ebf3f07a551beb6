"""Run configuration: pydantic models loaded from YAML with one-line validation errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evo_merge.operators.crossover import CrossoverConfig
from evo_merge.operators.mutation import MutationConfig
from evo_merge.operators.succession import SuccessionConfig
from evo_merge.racing_config import RacingConfig
from evo_merge.yamlfile import load_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TaskRef(_Strict):
    """A fitness task spec file and its weight in the weighted-sum fitness."""

    spec: Path
    weight: float = Field(1.0, gt=0)
    overrides: dict[str, Any] = Field(default_factory=dict, description="task spec fields to override, "
                                      "e.g. {fitness_samples: 50, test_split: last}")


class SelectionConfig(_Strict):
    method: str = "tournament"
    elite_fraction: float = Field(0.1, ge=0, le=1)
    tournament_size: int = Field(3, ge=1)


class EnsembleConfig(_Strict):
    top_k: int = Field(3, ge=1)


class SearchConfig(_Strict):
    """Nevergrad search over merge coefficients: LoraHub-style composition of the members,
    or per-layer / per-tensor-filter recipes (mergekit-evolve style)."""

    optimizer: str = Field("NGOpt", description="a name in nevergrad.optimizers.registry: NGOpt, CMA, "
                           "TwoPointsDE, PSO, OnePlusOne, ...")
    budget: int = Field(60, ge=1, description="candidates evaluated")
    num_workers: int = Field(1, ge=1, description="candidates evaluated at once")
    parents: Literal["all"] | int = Field("all", description="'all', or the k fittest")
    method: str = Field("task_arithmetic", description="merge method; task_arithmetic is LoraHub's weighted sum")
    params: dict[str, bool | float | str | list[float]] = Field(default_factory=dict,
                                                   description="merge parameters: a number is fixed, "
                                                   "[low, high] is searched")
    granularity: Literal["parent", "layers", "filters"] = "parent"
    layer_groups: int | None = Field(4, ge=1, description="granularity 'layers': blocks of consecutive layers "
                                     "(null: one per layer)")
    filters: list[str] = Field(default_factory=list, description="granularity 'filters': tensor-name substrings")
    bounds: tuple[float, float] = (-1.5, 1.5)
    init: Literal["uniform", "zeros"] = "uniform"
    l1: float = Field(0.0, ge=0, description="weight of the mean absolute coefficient in the objective")
    objective: Literal["fitness", "loss"] = "fitness"
    tell_order: Literal["completion", "ask"] = "completion"

    @model_validator(mode="after")
    def _consistent(self) -> "SearchConfig":
        lo, hi = self.bounds
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise ValueError(f"bounds must be two finite numbers, lower below upper; got [{lo}, {hi}]")
        if isinstance(self.parents, int) and self.parents < 2:
            raise ValueError(f"parents must be 'all' or at least 2, got {self.parents}")
        for name, value in self.params.items():
            if isinstance(value, list) and (len(value) != 2 or value[0] >= value[1]):
                raise ValueError(f"params.{name}: a searched parameter is [low, high] with low < high, got {value}")
        if self.granularity == "filters" and not self.filters:
            raise ValueError("granularity 'filters' needs a non-empty filters list")
        return self

    def searched_params(self) -> dict[str, tuple[float, float]]:
        return {k: (float(v[0]), float(v[1])) for k, v in self.params.items() if isinstance(v, list)}

    def fixed_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if not isinstance(v, list)}

    def groups_spec(self) -> dict[str, Any]:
        """How tensors map to coefficient groups, as recorded in each composition recipe."""
        spec: dict[str, Any] = {"granularity": self.granularity}
        if self.granularity == "layers":
            spec["layer_groups"] = self.layer_groups
        if self.granularity == "filters":
            spec["filters"] = list(self.filters)
        return spec


class EvolutionSearchConfig(SearchConfig):
    """A coefficient-search crossover inside evolution: every ``every`` generations, the
    ``parents`` fittest of the population are merged with searched coefficients."""

    every: int = Field(5, ge=1, description="run a search in every N-th generation")
    parents: Literal["all"] | int = 4
    budget: int = Field(30, ge=1)


class StallConfig(_Strict):
    """What to do when the search stops moving (the rule and each use of it go into the lineage)."""

    enabled: bool = True
    patience: int = Field(3, ge=1, description="generations without a rise of the best fitness (or since the "
                          "last action) that count as a stall")
    min_delta: float = Field(0.0, ge=0, description="a rise smaller than this is no rise")
    min_spread: float = Field(0.0, ge=0, description="a population whose fitness std is below this is stalled too")
    actions: list[Literal["immigrants", "boost", "restart"]] = Field(
        default_factory=lambda: ["immigrants", "boost"], description="immigrants: new random per-layer merges "
        "of the members join the survivors; boost: larger mutations for a generation; restart: the population "
        "restarts from the best distinct individuals found so far")
    immigrants: float = Field(0.3, gt=0, le=1, description="share of population_size that immigrates")
    boost: float = Field(3.0, ge=1, description="mutation sigma multiplier in the generation after a stall")


class OperatorChoice(_Strict):
    """A registered operator that plans offspring every generation, with its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class EvolutionConfig(_Strict):
    generations: int = Field(5, ge=0)
    population_size: int = Field(10, ge=2, description="N_max: survivors per generation")
    init: Literal["members", "pairs"] = "members"
    crossover: CrossoverConfig = Field(default_factory=CrossoverConfig)
    mutation: MutationConfig = Field(default_factory=MutationConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    succession: SuccessionConfig = Field(default_factory=SuccessionConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    search: EvolutionSearchConfig | None = None
    stall: StallConfig = Field(default_factory=StallConfig)
    racing: RacingConfig = Field(default_factory=RacingConfig)
    operators: list[OperatorChoice] = Field(default_factory=list, description="further operators (e.g. from "
                                            "plugins) that plan offspring each generation after the mutants")

    @model_validator(mode="after")
    def _parents_fit(self) -> "EvolutionConfig":
        if self.crossover.num_parents > self.population_size:
            raise ValueError(f"crossover.num_parents ({self.crossover.num_parents}) is larger than population_size "
                             f"({self.population_size})")
        return self


class EvalConfig(_Strict):
    batch_size: int = Field(64, ge=1)
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    multi_lora: int = Field(0, ge=0, description="LoRA populations, in-process pool: score up to this many "
                            "individuals in one batched forward (0 or 1: one at a time)")


class LoraSettings(_Strict):
    """How LoRA populations are represented and merged."""

    mode: Literal["exact", "factors", "product"] = Field(
        "exact", description="exact: every weighted sum of members is exact (B factors over the members' "
        "stacked A); factors: A and B averaged separately (GENOME, LoraHub); product: B A merged, then "
        "factored back to the members' rank by SVD")
    max_rank: int | None = Field(None, ge=1, description="exact mode: the rank merges may reach (default: the "
                                 "members' summed rank, so every weighted sum is exact); below it, results are "
                                 "truncated by SVD")

    @model_validator(mode="after")
    def _rank_only_exact(self) -> "LoraSettings":
        if self.max_rank is not None and self.mode != "exact":
            raise ValueError(f"max_rank applies to mode 'exact' only, not {self.mode!r}")
        return self


class PoolConfig(_Strict):
    """Where individuals are built and scored: this process, or a pool of Ray actors."""

    backend: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=1)
    mode: Literal["generational", "async"] = "generational"
    address: str | None = Field(None, description="null: start Ray on this machine; 'auto' or 'ray://host:port'")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    resources_per_worker: dict[str, float] = Field(default_factory=dict)
    placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    prefetch: int = Field(2, ge=1, description="jobs queued on each worker, so none waits on a round trip")
    max_worker_failures: int = Field(3, ge=0, description="replacements of one worker slot before the run fails")
    async_offspring: int | None = Field(None, ge=1, description="async mode: offspring in all; "
                                        "default generations x population_size / 2")
    runtime_env: dict[str, Any] | None = None


class RunConfig(_Strict):
    """Everything a run needs; paths are resolved relative to the config file."""

    seed: int = Field(0, ge=0)
    out: Path = Path("runs/run")
    population: Path
    tasks: list[TaskRef] = Field(min_length=1)
    heldout_tasks: list[TaskRef] = Field(default_factory=list, description="scored in the report only "
                                         "(their test split); no fitness ever uses them")
    evolution: EvolutionConfig = Field(default_factory=EvolutionConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    search: SearchConfig = Field(default_factory=SearchConfig, description="settings of `evo-merge search`")
    trust_remote_code: bool = False
    plugins: list[str] = Field(default_factory=list, description="modules or .py files (relative to this file) "
                               "that register merge methods, operators or metrics")

    @model_validator(mode="after")
    def _async_limits(self) -> "RunConfig":
        if self.pool.mode == "async" and self.evolution.succession.enabled:
            raise ValueError("pool.mode 'async' does not run succession; set evolution.succession.enabled: false")
        if self.pool.mode == "async" and self.evolution.search is not None:
            raise ValueError("pool.mode 'async' does not run coefficient searches; remove evolution.search")
        racing = self.evolution.racing
        if self.pool.mode == "async" and racing.enabled and racing.rule in ("halving", "survival"):
            if not racing.model_fields_set & {"enabled", "rule"}:  # the default: async runs score in full
                racing.enabled = False
                return self
            raise ValueError("pool.mode 'async' races offspring one by one: set evolution.racing.rule to estimate "
                             f"or hoeffding ({racing.rule} decides on a generation's offspring together)")
        return self


class SweepConfig(_Strict):
    """Fitness-set size against test score for one method; the test set stays the same."""

    method: str = "GENOME"
    fitness_samples: list[int] = Field(default_factory=lambda: [50, 100, 200, 400], min_length=1)


class CompareConfig(_Strict):
    """``evo-merge compare``: methods x seeds x target tasks on one population and split."""

    base: Path = Field(description="the run config every method starts from")
    out: Path = Path("runs/compare")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    targets: list[Path] = Field(default_factory=list, description="task specs compared one at a time; "
                                "default: the base config's tasks, together")
    methods: list[str] | None = Field(None, description="names from evo_merge.baselines; default all")
    budget: int = Field(80, ge=1, description="candidates per coefficient search")
    sweep: SweepConfig | None = None
    relevant: dict[str, list[str]] = Field(default_factory=dict, description="method 'relevant average': the "
                                           "members relevant to each target, by the target spec's file stem")


def load_run_config(path: Path, overrides: dict[str, Any] | None = None,
                    flags: dict[str, str] | None = None) -> RunConfig:
    """Load a run config; relative paths in it are taken relative to the config file. ``flags``
    names the command-line flag behind each override, for errors in its value."""
    path = Path(path)
    cfg: RunConfig = load_model(RunConfig, path, "config", overrides, flags)
    here = path.resolve().parent
    cfg.population = _resolve(here, cfg.population)
    for task in cfg.tasks + cfg.heldout_tasks:
        task.spec = _resolve(here, task.spec)
    cfg.plugins = [str(_resolve(here, Path(p))) if p.endswith(".py") else p for p in cfg.plugins]
    return cfg


def load_compare_config(path: Path, overrides: dict[str, Any] | None = None) -> CompareConfig:
    path = Path(path)
    cfg: CompareConfig = load_model(CompareConfig, path, "compare config", overrides)
    here = path.resolve().parent
    cfg.base = _resolve(here, cfg.base)
    cfg.targets = [_resolve(here, t) for t in cfg.targets]
    return cfg


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p).resolve()
