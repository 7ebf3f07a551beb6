"""Reading YAML files into pydantic models, every failure as one line naming the file and field."""

from __future__ import annotations

import copy
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


def validation_message(path: Path, exc: ValidationError) -> str:
    """The first pydantic error as 'file: field.path: message'."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    extra = f" ({exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {loc}: {msg}{extra}"


def load_model(model: type[BaseModel], path: Path, what: str, overrides: dict[str, Any] | None = None) -> Any:
    """Read YAML at ``path`` into ``model``, applying dotted-key ``overrides`` first."""
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
        raise EvoMergeError(validation_message(path, exc)) from None
