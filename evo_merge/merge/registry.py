"""Registry of merge methods: each method is one decorated function.

A method merges the k tensors that share one name across k parents::

    @merge_method("linear", elementwise=True, normalize=True)
    def linear(tensors, weights, *, generator, normalize):
        ...

``tensors`` is a sequence of same-shape tensors (task vectors, i.e. deltas from the
base, or LoRA factors), ``weights`` a float32 tensor of shape (k,) on the same
device, ``generator`` a seeded ``torch.Generator`` on that device (or None for
deterministic methods). Keyword parameters use mergekit's names (weight, density,
normalize, lambda_, t, gamma, epsilon) and their defaults are declared in the
decorator, so configs are validated against them. ``elementwise=True`` declares
that the method treats every value independently of the others of its tensor, so
it may be applied to a genome's whole flat buffer in one call.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from evo_merge.errors import EvoMergeError

MergeFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    name: str
    fn: MergeFn
    elementwise: bool
    defaults: dict[str, Any] = field(default_factory=dict)
    min_parents: int = 1
    max_parents: int | None = None
    uses_random: bool = False
    doc: str = ""

    def resolve_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``params``; unknown names raise a one-line error."""
        params = dict(params or {})
        if "lambda" in params:  # accept mergekit's spelling
            params["lambda_"] = params.pop("lambda")
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise EvoMergeError(f"merge method {self.name!r}: unknown parameter {unknown[0]!r} (known: {known})")
        return {**self.defaults, **params}

    def __call__(self, tensors: Sequence[torch.Tensor], weights: torch.Tensor, *,
                 generator: torch.Generator | None = None, **params: Any) -> torch.Tensor:
        k = len(tensors)
        if k < self.min_parents or (self.max_parents is not None and k > self.max_parents):
            bound = f"exactly {self.min_parents}" if self.min_parents == self.max_parents else f"at least {self.min_parents}"
            raise EvoMergeError(f"merge method {self.name!r} needs {bound} parents, got {k}")
        if weights.numel() != k:
            raise EvoMergeError(f"merge method {self.name!r}: {weights.numel()} weights for {k} parents")
        return self.fn(tensors, weights, generator=generator, **self.resolve_params(params))


_METHODS: dict[str, MergeMethod] = {}


def merge_method(name: str, *, elementwise: bool = False, min_parents: int = 1,
                 max_parents: int | None = None, uses_random: bool = False,
                 **defaults: Any) -> Callable[[MergeFn], MergeFn]:
    """Register ``fn`` as merge method ``name`` with parameter defaults."""

    def register(fn: MergeFn) -> MergeFn:
        if name in _METHODS:
            raise ValueError(f"merge method {name!r} registered twice")
        _METHODS[name] = MergeMethod(name, fn, elementwise, dict(defaults), min_parents, max_parents,
                                     uses_random, inspect.getdoc(fn) or "")
        return fn

    return register


def get_merge_method(name: str) -> MergeMethod:
    """Look up a method by name; unknown names raise a one-line error listing the known ones."""
    _ensure_builtin_methods()
    try:
        return _METHODS[name]
    except KeyError:
        raise EvoMergeError(f"unknown merge method {name!r} (known: {', '.join(sorted(_METHODS))})") from None


def merge_methods() -> dict[str, MergeMethod]:
    _ensure_builtin_methods()
    return dict(_METHODS)


def _ensure_builtin_methods() -> None:
    import evo_merge.merge.methods  # noqa: F401  (registers the built-in methods)
