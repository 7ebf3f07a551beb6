"""Merge methods: each method is one decorated function; its parameters come from its signature.

A method merges the k tensors that share one name across k parents::

    @merge_method("linear", elementwise=True)
    def linear(tensors, weights, *, generator, normalize: bool = True):
        ...

``tensors`` is a sequence of same-shape tensors, ``weights`` a float32 tensor of shape (k,)
on the same device,
``generator`` a seeded ``torch.Generator`` on that device (or None for deterministic
methods). Keyword parameters use mergekit's names (density, normalize, lambda, t, gamma,
epsilon); their types, ranges and defaults are the annotations and defaults of the
signature, so a config is validated (names and values) before a run exists.
``elementwise=True`` declares that the method treats every value independently of the
others of its tensor, so it may run on a genome's whole flat buffer in one call
(``elementwise_if``: only for the parameter values it accepts).

``space`` says what the tensors are. "delta": task vectors (model minus base); the result
is a task vector (whoever runs the method adds the base back). "weights": model weights.
``base`` is mergekit's base-model policy ("none", "optional", "required"): when it is not
"none" the inputs are the models other than the base, and the function receives keyword
``base``, the base model's tensor or None. In evolution every genome is a task vector, so
methods are called with ``base=None``, which means the origin (zeros).
Per-model parameters (mergekit's NON_BASE scope: density, gamma, epsilon) take one value
or a list of k values (``X | list[X]``); ``per_model`` turns either into k floats.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Sequence

import torch
from pydantic import AfterValidator, Field, ValidationError, WrapValidator

from evo_merge.errors import EvoMergeError
from evo_merge.registry import Entry, Registry

MergeFn = Callable[..., torch.Tensor]
Space = Literal["delta", "weights"]
BasePolicy = Literal["none", "optional", "required"]


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
NonNegative = Annotated[float, Field(ge=0.0)]


def _one_or_list(value: Any, handler: Callable[[Any], Any]) -> Any:
    """Validate ``X | list[X]``, reporting only the matching branch's error in one line."""
    try:
        return handler(value)
    except ValidationError as exc:
        errors = exc.errors()
        as_list = isinstance(value, (list, tuple))
        err = next((e for e in errors if str(e["loc"][0] if e["loc"] else "").startswith("list") == as_list),
                   errors[0])
        at = f" (item {err['loc'][1]})" if as_list and len(err["loc"]) > 1 else ""
        raise ValueError(err["msg"].removeprefix("Value error, ") + at) from None


# per-model parameters (mergekit's NON_BASE scope): one value for every model, or a list of k values
Densities = Annotated[Density | list[Density], WrapValidator(_one_or_list)]
Gammas = Annotated[Gamma | list[Gamma], WrapValidator(_one_or_list)]
Epsilons = Annotated[NonNegative | list[NonNegative], WrapValidator(_one_or_list)]


def per_model(value: float | Sequence[float], k: int, name: str) -> list[float]:
    """A per-model parameter as k floats: a scalar repeated, or a list of exactly k values."""
    if isinstance(value, (list, tuple)):
        if len(value) != k:
            raise EvoMergeError(f"parameter {name}: {len(value)} values for {k} models")
        return [float(v) for v in value]
    return [float(value)] * k


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
    space: Space = "delta"
    base: BasePolicy = "none"
    elementwise_if: Callable[[dict[str, Any]], bool] | None = None  # elementwise for these resolved params

    def is_elementwise(self, params: dict[str, Any]) -> bool:
        """Whether the method may run on a whole flat buffer with these (resolved) parameters."""
        return self.elementwise or (self.elementwise_if is not None and bool(self.elementwise_if(params)))

    @property
    def entry(self) -> Entry["MergeMethod"]:
        return MERGE_METHODS.entry(self.name)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    @property
    def defaults(self) -> dict[str, Any]:
        return self.entry.validate({}, f"merge method {self.name!r}")

    @property
    def per_model(self) -> set[str]:
        """The parameters that may differ per model (annotated ``X | list[X]``), by their YAML names."""
        return {f.alias or name for name, f in self.entry.params.model_fields.items()
                if "list[" in str(f.annotation) or "List[" in str(f.annotation)}

    def resolve_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, validated; unknown names and bad values raise one line."""
        return self.entry.validate(params, f"merge method {self.name!r}")

    def __call__(self, tensors: Sequence[torch.Tensor], weights: torch.Tensor, *,
                 generator: torch.Generator | None = None, base: torch.Tensor | None = None,
                 **params: Any) -> torch.Tensor:
        """Merge ``tensors`` (the inputs other than the base when the base policy is not "none");
        ``base`` is passed on only to methods with a base policy (None: the origin)."""
        k = len(tensors)
        if k < self.min_parents or (self.max_parents is not None and k > self.max_parents):
            bound = (f"exactly {self.min_parents}" if self.min_parents == self.max_parents
                     else f"at least {self.min_parents}" if k < self.min_parents else f"at most {self.max_parents}")
            raise EvoMergeError(f"merge method {self.name!r} needs {bound} parents, got {k}")
        if weights.numel() != k:
            raise EvoMergeError(f"merge method {self.name!r}: {weights.numel()} weights for {k} parents")
        extra: dict[str, Any] = {}
        if self.base != "none":
            extra["base"] = base
        elif base is not None:
            raise EvoMergeError(f"merge method {self.name!r} takes no base model")
        return self.fn(tensors, weights, generator=generator, **extra, **self.resolve_params(params))


MERGE_METHODS: Registry[MergeMethod] = Registry("merge method", builtins="evo_merge.merge.methods",
                                                skip=("generator", "base"))


def merge_method(name: str, *, elementwise: bool = False, min_parents: int = 1, max_parents: int | None = None,
                 uses_random: bool = False, linear: bool = False, space: Space = "delta",
                 base: BasePolicy = "none",
                 elementwise_if: Callable[[dict[str, Any]], bool] | None = None) -> Callable[[MergeFn], MergeFn]:
    """Register ``fn`` as merge method ``name``; its keyword parameters are the method's settings.
    ``linear=True``: the result is sum_i f(w)_i x_i for every tensor (so merging LoRA B factors
    over a shared A is exact); other methods see exact-LoRA parents as weight updates.
    ``space`` and ``base``: see the module docstring; min/max_parents count the inputs other than
    the base."""
    if space not in ("delta", "weights") or base not in ("none", "optional", "required"):
        raise ValueError(f"merge method {name!r}: bad space {space!r} or base policy {base!r}")

    def register(fn: MergeFn) -> MergeFn:
        method = MergeMethod(name, fn, elementwise, min_parents, max_parents, uses_random, linear, space, base,
                             elementwise_if)
        MERGE_METHODS.add(name, method, source=fn)
        return fn

    return register


def get_merge_method(name: str | MergeMethod) -> MergeMethod:
    """Look up a method by name; unknown names raise a one-line error listing the known ones."""
    return name if isinstance(name, MergeMethod) else MERGE_METHODS.get(name)


def merge_methods() -> dict[str, MergeMethod]:
    return {n: MERGE_METHODS.get(n) for n in MERGE_METHODS.names()}
