"""A tiny named-function registry shared by the operator families."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from evo_merge.errors import EvoMergeError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Maps names to functions; ``@registry.register("name")`` adds one."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def add(fn: F) -> F:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            return fn

        return add

    def get(self, name: str) -> F:
        try:
            return self._items[name]
        except KeyError:
            raise EvoMergeError(f"unknown {self.kind} {name!r} (known: {', '.join(sorted(self._items))})") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
