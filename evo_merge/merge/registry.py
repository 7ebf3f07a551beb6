"""Merge methods: each method is one decorated function; its parameters come from its signature.

A method merges the k tensors that share one name across k parents::

    @merge_method("linear", elementwise=True)
    def linear(tensors, weights, *, generator, normalize: bool = True):
        ...

``tensors`` is a sequence of same-shape tensors (task vectors, i.e. deltas from the
base, or LoRA factors), ``weights`` a float32 tensor of shape (k,) on the same device,
``generator`` a seeded ``torch.Generator`` on that device (or None for deterministic
methods). Keyword parameters use mergekit's names (density, normalize, lambda, t, gamma,
epsilon); their types, ranges and defaults are the annotations and defaults of the
signature, so a config is validated (names and values) before a run exists.
``elementwise=True`` declares that the method treats every value independently of the
others of its tensor, so it may run on a genome's whole flat buffer in one call.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Sequence

import torch
from pydantic import AfterValidator, Field

from evo_merge.errors import EvoMergeError
from evo_merge.registry import Entry, Registry

MergeFn = Callable[..., torch.Tensor]



def _within(name: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> AfterValidator:
    shown = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def check(v: float) -> float:
        if not ((lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)):
            raise ValueError(f"{name} must be in {shown}")
        return v

    return AfterValidator(check)


Density = Annotated[float, _within("density", 0.0, 1.0, True, False)]
Gamma = Annotated[float, _within("gamma", 0.0, 1.0, False, True)]
Unit = Annotated[float, _within("t", 0.0, 1.0, False, False)]
Positive = Annotated[float, Field(gt=0.0)]


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge function and how it may be applied."""

    name: str
    fn: MergeFn
    elementwise: bool = False
    min_parents: int = 1
    max_parents: int | None = None
    uses_random: bool = False
    linear: bool = False  # the result is a fixed linear combination of the inputs (exact on LoRA factors)

    @property
    def entry(self) -> Entry["MergeMethod"]:
        return MERGE_METHODS.entry(self.name)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    @property
    def defaults(self) -> dict[str, Any]:
        return self.entry.validate({}, f"merge method {self.name!r}")

    def resolve_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, validated; unknown names and bad values raise one line."""
        return self.entry.validate(params, f"merge method {self.name!r}")

    def __call__(self, tensors: Sequence[torch.Tensor], weights: torch.Tensor, *,
                 generator: torch.Generator | None = None, **params: Any) -> torch.Tensor:
        k = len(tensors)
        if k < self.min_parents or (self.max_parents is not None and k > self.max_parents):
            bound = f"exactly {self.min_parents}" if self.min_parents == self.max_parents else f"at least {self.min_parents}"
            raise EvoMergeError(f"merge method {self.name!r} needs {bound} parents, got {k}")
        if weights.numel() != k:
            raise EvoMergeError(f"merge method {self.name!r}: {weights.numel()} weights for {k} parents")
        return self.fn(tensors, weights, generator=generator, **self.resolve_params(params))


MERGE_METHODS: Registry[MergeMethod] = Registry("merge method", builtins="evo_merge.merge.methods", skip=("generator",))


def merge_method(name: str, *, elementwise: bool = False, min_parents: int = 1, max_parents: int | None = None,
                 uses_random: bool = False, linear: bool = False) -> Callable[[MergeFn], MergeFn]:
    """Register ``fn`` as merge method ``name``; its keyword parameters are the method's settings.
    ``linear=True``: the result is sum_i f(w)_i x_i for every tensor (so merging LoRA B factors
    over a shared A is exact); other methods see exact-LoRA parents as weight updates."""

    def register(fn: MergeFn) -> MergeFn:
        MERGE_METHODS.add(name, MergeMethod(name, fn, elementwise, min_parents, max_parents, uses_random, linear),
                          source=fn)
        return fn

    return register


def get_merge_method(name: str | MergeMethod) -> MergeMethod:
    """Look up a method by name; unknown names raise a one-line error listing the known ones."""
    return name if isinstance(name, MergeMethod) else MERGE_METHODS.get(name)


def merge_methods() -> dict[str, MergeMethod]:
    return {n: MERGE_METHODS.get(n) for n in MERGE_METHODS.names()}
