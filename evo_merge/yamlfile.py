"""Reading YAML files into pydantic models, every failure as one line naming the file and field."""

from __future__ import annotations

import copy
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from evo_merge.errors import EvoMergeError


MAX_BYTES = 1 << 20      # a config, population or task spec is a few kilobytes
MAX_NODES = 100_000      # nodes once aliases are expanded: a "billion laughs" document has 10^9


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents whose aliases expand past MAX_NODES nodes."""

    def construct_document(self, node):
        _expanded(node, {})
        return super().construct_document(node)


def _expanded(node, memo: dict[int, int]) -> int:
    """Nodes under ``node`` with every alias expanded (shared subtrees counted each time)."""
    if id(node) in memo:
        size = memo[id(node)]
    else:
        memo[id(node)] = 1  # a cycle counts once
        children = node.value if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) else []
        items = [c for pair in children for c in pair] if isinstance(node, yaml.MappingNode) else children
        size = 1 + sum(_expanded(child, memo) for child in items)
        memo[id(node)] = size
    if size > MAX_NODES:
        raise yaml.YAMLError(f"aliases expand to more than {MAX_NODES} nodes (a YAML bomb?)")
    return size


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    """Parse a YAML mapping, turning every failure into a one-line EvoMergeError. Documents over
    1 MiB, or whose aliases expand past 100,000 nodes, are refused before they are built."""
    path = Path(path)
    if not path.is_file():
        raise EvoMergeError(f"{what} file not found: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise EvoMergeError(f"{path}: {path.stat().st_size} bytes; a {what} file is at most {MAX_BYTES} bytes")
    try:
        data = yaml.load(path.read_text(), Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EvoMergeError(f"{path}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise EvoMergeError(f"{path}: not a text file") from None
    if not isinstance(data, dict):
        raise EvoMergeError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def validation_message(path: Path, exc: ValidationError, model: type[BaseModel] | None = None,
                       flags: dict[str, str] | None = None) -> str:
    """The first pydantic error as 'file: field.path: message'. An unknown key names the nearest
    known one of ``model`` at that place; an error in a value a command-line flag set names the
    flag (``flags``: dotted key -> '--flag'), not the file."""
    errors = exc.errors()
    # a misspelt key is also a missing one: the unknown key (and what it was meant to be) says more
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    extra = f" ({exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if err["type"] == "extra_forbidden" and err["loc"]:
        *parent, key = err["loc"]
        where = ".".join(str(p) for p in parent)
        return f"{path}: {where + ': ' if where else ''}{unknown_key(str(key), known_keys(model, parent))}{extra}"
    for dotted, flag in sorted((flags or {}).items(), key=lambda kv: -len(kv[0])):
        if loc == dotted or loc.startswith(dotted + "."):
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], (dict, list)) else ""
            return f"{flag}: {msg}{got}{extra}"
    return f"{path}: {loc}: {msg}{extra}"


def unknown_key(key: str, known: list[str], what: str = "key") -> str:
    """'unknown key 'generatons' (did you mean 'generations'?)', or the known keys when none is near."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown {what} {key!r} (did you mean {close[0]!r}?)"
    return f"unknown {what} {key!r} (known: {', '.join(known)})" if known else f"unknown {what} {key!r}"


def known_keys(model: Any, loc: list) -> list[str]:
    """The field names (aliases) of the model found by following ``loc`` from ``model``: through
    fields, list items, dict values and the members of a union."""
    current = [model] if model is not None else []
    for part in loc:
        current = [t for m in current for t in _step(m, part)]
    names: dict[str, None] = {}
    for m in (t for c in current for t in _unions(c)):
        if isinstance(m, type) and issubclass(m, BaseModel):
            names.update((f.alias or n, None) for n, f in m.model_fields.items())
    return list(names)


def _step(annotation: Any, part: Any) -> list[Any]:
    """The annotations that ``part`` (a field name, list index or dict key) leads to from ``annotation``."""
    out = []
    for t in _unions(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            if part == t.__name__:
                out.append(t)  # pydantic names the union member it tried
            for n, f in t.model_fields.items():
                if part in (n, f.alias):
                    out.append(f.annotation)
        elif typing.get_origin(t) in (list, tuple, set) and isinstance(part, int):
            out.extend(a for a in typing.get_args(t)[:1])
        elif typing.get_origin(t) is dict:
            out.extend(typing.get_args(t)[1:2])
    return out


def _unions(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _unions(arg)]
    if typing.get_origin(annotation) is typing.Annotated:
        return _unions(typing.get_args(annotation)[0])
    return [annotation]


def load_model(model: type[BaseModel], path: Path, what: str, overrides: dict[str, Any] | None = None,
               flags: dict[str, str] | None = None) -> Any:
    """Read YAML at ``path`` into ``model``, applying dotted-key ``overrides`` first (``flags``: the
    command-line flag that set each, named in an error about its value)."""
    data = read_yaml(path, what)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = copy.deepcopy(value)  # later dotted overrides edit it in place: never the caller's
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EvoMergeError(validation_message(path, exc, model, flags)) from None
