"""One registry class for every named part: merge methods, operators, metrics, selection
rules, coefficient schemes and comparison baselines.

An entry is a function or a class. Its parameters are read from its signature, as
mergekit's ``easy_define`` does: every keyword-only parameter (after ``*``) with its
annotation and default becomes a field of a pydantic model, so values are validated, not
only names, before a run exists::

    @MERGE_METHODS.register("ties")
    def ties(tensors, weights, *, generator, density: Fraction = 1.0, lambda_: float = 1.0): ...

A trailing underscore (``lambda_``) is dropped in the external name (``lambda``).
"""

from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from evo_merge.errors import EvoMergeError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered item, its typed parameters and free-form metadata."""

    name: str
    item: T
    params: type[BaseModel]
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self, values: dict[str, Any] | None, what: str) -> dict[str, Any]:
        """Defaults overlaid with ``values``, checked: one-line error naming the parameter."""
        try:
            model = self.params.model_validate(dict(values or {}))
        except ValidationError as exc:
            raise EvoMergeError(f"{what}: {param_error(exc, self.params)}") from None
        return model.model_dump()


def param_error(exc: ValidationError, model: type[BaseModel]) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        import difflib

        names = [f.alias or n for n, f in model.model_fields.items()]
        close = difflib.get_close_matches(loc, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown parameter {loc!r} ({hint}known: {', '.join(names) or 'none'})"
    got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
    return f"parameter {loc}: {err['msg'].removeprefix('Value error, ')}{got}"


def params_model(fn: Callable, name: str, skip: tuple[str, ...] = ()) -> type[BaseModel]:
    """A pydantic model of ``fn``'s keyword-only parameters (a class: of its ``__init__``)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except (NameError, TypeError):
        hints = {}
    fields: dict[str, Any] = {}
    for p in inspect.signature(target).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.name in skip:
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        annotation = hints.get(p.name, Any)
        alias = p.name[:-1] if p.name.endswith("_") else None
        fields[p.name] = (annotation, Field(default, alias=alias) if alias else default)
    config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)
    return create_model(f"{name.title().replace('_', '')}Params", __config__=config, **fields)


class Registry(Generic[T]):
    """Maps names to items; ``@registry.register("name")`` adds one.

    ``builtins`` names a module that registers the built-in items; it is imported the
    first time the registry is read, so the registry's module never imports it.
    ``skip`` lists keyword parameters that are plumbing, not settings (a generator)."""

    def __init__(self, kind: str, builtins: str | tuple[str, ...] | None = None, skip: tuple[str, ...] = ()):
        self.kind, self.skip = kind, skip
        self.builtins = (builtins,) if isinstance(builtins, str) else builtins
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def add(item: T) -> T:
            self.add(name, item, **meta)
            return item

        return add

    def add(self, name: str, item: T, source: Callable | None = None, **meta: Any) -> Entry[T]:
        """Register ``item``; its parameters are read from ``source`` (default: the item itself)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        entry = Entry(name, item, params_model(source or item, name, self.skip), meta)  # type: ignore[arg-type]
        self._entries[name] = entry
        return entry

    def _load(self) -> None:
        if self.builtins:
            modules, self.builtins = self.builtins, None
            for module in modules:
                importlib.import_module(module)

    def entry(self, name: str) -> Entry[T]:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(name), list(self._entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise EvoMergeError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())}{hint})") from None

    def get(self, name: str) -> T:
        return self.entry(name).item

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries
