"""A coefficient search's space: the Nevergrad parametrization, its decoding and the optimizer.

Coefficients are one flat array, group-major: ``coefficients[g * k + i]`` weighs parent
``i`` in tensor group ``g``. Merge parameters given as ``[low, high]`` are searched as
scalars beside it; the others are fixed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

from evo_merge.config import SearchConfig
from evo_merge.errors import EvoMergeError
from evo_merge.merge.groups import TensorGroups


@dataclass
class Candidate:
    """A decoded point: flat group-major coefficients and the merge parameters."""

    coefficients: list[float]
    params: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"coefficients": self.coefficients, "params": self.params}


class CoefficientSpace:
    def __init__(self, cfg: SearchConfig, k: int, groups: TensorGroups, seed: int):
        import nevergrad as ng

        self.cfg, self.k, self.groups = cfg, k, groups
        lo, hi = cfg.bounds
        start = {"uniform": 1.0 / k, "zeros": 0.0}[cfg.init]
        init = np.full(k * len(groups), float(np.clip(start, lo, hi)))
        searched = {name: ng.p.Scalar(init=(a + b) / 2, lower=a, upper=b)
                    for name, (a, b) in cfg.searched_params().items()}
        self.parametrization = ng.p.Dict(coefficients=ng.p.Array(init=init, lower=lo, upper=hi), **searched)
        self.parametrization.random_state = np.random.RandomState(seed % 2**32)
        self.fixed = cfg.fixed_params()

    @property
    def dimension(self) -> int:
        return self.parametrization.dimension

    def decode(self, value: dict[str, Any]) -> Candidate:
        coeffs = [float(x) for x in np.asarray(value["coefficients"]).reshape(-1)]
        params = {**self.fixed, **{k: float(v) for k, v in value.items() if k != "coefficients"}}
        return Candidate(coeffs, params)

    def penalty(self, cand: Candidate) -> float:
        """L1 term: weight times the mean absolute coefficient (LoraHub's regulariser)."""
        return self.cfg.l1 * float(np.mean(np.abs(cand.coefficients)))


def optimizer_class(name: str) -> Any:
    """The Nevergrad optimizer registered as ``name``; a one-line error names close matches."""
    import nevergrad as ng

    if name not in ng.optimizers.registry:
        close = difflib.get_close_matches(name, list(ng.optimizers.registry), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see nevergrad.optimizers.registry)"
        raise EvoMergeError(f"unknown Nevergrad optimizer {name!r}{hint}")
    return ng.optimizers.registry[name]


def make_optimizer(cfg: SearchConfig, space: CoefficientSpace) -> Any:
    return optimizer_class(cfg.optimizer)(parametrization=space.parametrization, budget=cfg.budget,
                                          num_workers=cfg.num_workers)
