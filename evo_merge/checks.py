"""Checks that refuse bad input before a run exists: operator and merge-method names and
parameters, the coefficient search, racing's metrics and the device."""

from __future__ import annotations

from pydantic import ValidationError

from evo_merge.config import RunConfig, SearchConfig
from evo_merge.errors import EvoMergeError
from evo_merge.fitness.tasks import Task
from evo_merge.genome import GenomeLayout
from evo_merge.merge import get_merge_method
from evo_merge.operators.base import Operator, operator
from evo_merge.operators.parents import PARENT_SELECTORS
from evo_merge.operators.selection import SELECTORS
from evo_merge.registry import param_error


def check_operators(cfg: RunConfig) -> None:
    """Fail early on unknown operator names and merge parameters (names and values)."""
    evo = cfg.evolution
    for choice in evo.crossover.methods:
        get_merge_method(choice.method).resolve_params(choice.params)
    for extra in evo.operators:
        op = operator(extra.name)
        if op.plan.__func__ is Operator.plan.__func__:
            op.plan(None, [], None, None)  # the one-line refusal
        try:
            op.Config.model_validate(extra.params)
        except ValidationError as exc:
            raise EvoMergeError(f"evolution.operators {extra.name!r}: {param_error(exc, op.Config)}") from None
    PARENT_SELECTORS.get(evo.crossover.parent_selection)
    SELECTORS.get(evo.selection.method)
    if evo.search is not None:
        check_search(evo.search)


def check_search(search: SearchConfig, layout: GenomeLayout | None = None) -> None:
    """Fail early on an unknown optimizer, merge method or parameter, or groups that do not fit."""
    from evo_merge.merge.groups import tensor_groups
    from evo_merge.search.space import optimizer_class

    optimizer_class(search.optimizer)
    get_merge_method(search.method).resolve_params({k: v[0] if isinstance(v, list) else v
                                                    for k, v in search.params.items()})
    if layout is not None:
        tensor_groups(layout.names, search.granularity, search.layer_groups, search.filters)


def check_racing(tasks: list[tuple[Task, float]]) -> None:
    """Racing's Hoeffding bound needs per-example scores in [0, 1]."""
    from evo_merge.fitness.metrics import METRICS

    for task, _ in tasks:
        metric = task.spec.metric
        if task.spec.lm_eval is not None:
            continue  # per-document metrics of lm-eval tasks (acc, exact_match) are in [0, 1]
        if ":" in metric or not getattr(METRICS.get(metric), "bounded", False):
            raise EvoMergeError("evolution.racing rule hoeffding needs metrics with scores in [0, 1]; task "
                                f"{task.name} uses {metric!r}")


def check_device(cfg: RunConfig) -> None:
    """A device this machine (or, for a Ray pool, its workers' resources) can provide."""
    from evo_merge.model_host import resolve_device

    wants_gpu = cfg.eval.device.startswith("cuda")
    if cfg.pool.backend == "local" or cfg.pool.address is None:
        resolve_device(cfg.eval.device)  # a local Ray starts its workers on this machine
    if cfg.pool.backend == "ray" and wants_gpu and cfg.pool.gpus_per_worker == 0:
        raise EvoMergeError(f"eval.device is {cfg.eval.device!r} but pool.gpus_per_worker is 0: "
                            "Ray would give the workers no GPU")
