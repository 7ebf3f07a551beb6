"""Parameter values of a merge YAML for one tensor: filters, gradients and precedence, as mergekit.

A value is a scalar; a gradient (a list of numbers interpolated linearly at ``t``, the
layer's position in its slice from 0 to 1; embeddings and final norm / head take t = 0;
a list of non-numbers picks ``values[int(t * (n - 1))]``); or a list of ``{filter, value}``
conditions, the first whose filter is in the tensor's name (or absent, or ``*``) applying.
Precedence, highest first: the source model's own parameters, the slice's, the global ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from evo_merge.errors import EvoMergeError
from evo_merge.mergeyaml.schema import Condition, Setting, Settings


def evaluate(setting: Setting, tensor_name: str, t: float) -> Any:
    """The value of one setting for one tensor, or None when no condition matches."""
    if isinstance(setting, Condition):
        setting = [setting]
    if isinstance(setting, list):
        if not setting:
            return None
        if all(isinstance(c, Condition) for c in setting):
            for cond in setting:
                if cond.filter in (None, "*") or (tensor_name and cond.filter in tensor_name):
                    return evaluate(cond.value, tensor_name, t)
            return None
        if any(isinstance(c, Condition) for c in setting):
            raise EvoMergeError(f"a parameter list mixes numbers and filter conditions: {setting}")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in setting)
        if not numeric:
            return setting[int(t * (len(setting) - 1))]
        scaled = t * (len(setting) - 1)
        i0 = int(scaled)
        i1 = min(len(setting) - 1, i0 + 1)
        frac = scaled - i0
        return (1 - frac) * setting[i0] + frac * setting[i1]
    return setting


def resolve(name: str, scopes: Iterable[Settings | None], tensor_name: str, t: float) -> Any:
    """The first value set for ``name`` in ``scopes`` (highest precedence first), or None."""
    for scope in scopes:
        if scope and name in scope:
            value = evaluate(scope[name], tensor_name, t)
            if value is not None:
                return value
    return None


def names_in(scopes: Iterable[Settings | None]) -> set[str]:
    return {k for scope in scopes if scope for k in scope}
