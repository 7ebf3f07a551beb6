"""``--format json|csv`` for the commands that print tables: one record per row, so that
``pandas.read_json(..)`` or ``pandas.read_csv(..)`` loads the output as it is."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Sequence

import typer

from evo_merge.errors import EvoMergeError

DATA_FORMATS = ("json", "csv")


def check_format(fmt: str, allowed: Sequence[str]) -> str:
    fmt = fmt.lower()
    if fmt not in allowed:
        raise EvoMergeError(f"unknown --format {fmt!r}; choose one of {', '.join(allowed)}")
    return fmt


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def render(records: Sequence[dict[str, Any]], fmt: str) -> str:
    """JSON: a list of objects. CSV: a header of every key seen (in first-seen order), lists
    and dicts as JSON text in their cell."""
    if fmt == "json":
        return json.dumps([_plain(dict(r)) for r in records], indent=1) + "\n"
    keys: list[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: json.dumps(_plain(v)) if isinstance(v, (list, dict, tuple)) else v
                         for k, v in r.items()})
    return buf.getvalue()


def emit(records: Sequence[dict[str, Any]], fmt: str) -> None:
    """Write the records to stdout, nothing else (no colour, no wrapping)."""
    typer.echo(render(records, fmt), nl=False)
