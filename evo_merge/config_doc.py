"""A run config as commented YAML, every field shown, generated from the pydantic models in
``config.py`` (``evo-merge config --defaults``: the defaults; ``evo-merge config CONFIG``: a config
with its defaults filled in). Comments are the fields' descriptions, else ``NOTES``, else a
Literal's choices; README's block of defaults is this output, and a test keeps them equal."""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from evo_merge.config import RunConfig

WIDTH = 100
_MISSING = object()

NOTES = {
    "seed": "seeds every random choice; a run is reproducible bit for bit",
    "out": "the run directory (relative to the current directory)",
    "population": "required: a population spec file (relative to this file)",
    "tasks": "required, at least one: [{spec: FILE, weight: 1.0, overrides: {}}]; fitness is their weighted mean",
    "heldout_tasks": "scored in the report only (their test split): [{spec: FILE, weight: 1.0, overrides: {}}]",
    "evolution.generations": "generations after the members are scored",
    "evolution.init": "members | pairs (random-coefficient merges of member pairs)",
    "evolution.crossover.rate": "probability that a crossover slot makes a child",
    "evolution.crossover.num_parents": "parents merged per crossover",
    "evolution.crossover.parent_selection": "{parents}",
    "evolution.crossover.tournament_size": "parent_selection tournament: its size",
    "evolution.crossover.given": "coefficients 'given': one number per parent",
    "evolution.crossover.methods": "merge methods, picked with probability proportional to weight",
    "evolution.selection.method": "{selectors}",
    "evolution.selection.elite_fraction": "share of population_size kept as elites (at least one when > 0)",
    "evolution.succession": "a particle-swarm step along each individual's search direction",
    "evolution.ensemble.top_k": "the report's output ensemble of the k fittest",
    "evolution.search": "a coefficient-search crossover: {every: 5, parents: 4, budget: 30, ...}; the keys of "
                        "`search` below, plus every",
    "evolution.operators": "[{name: NAME, params: {...}}]",
    "eval.batch_size": "rows per forward",
    "eval.device": "auto | cpu | cuda | cuda:N",
    "eval.dtype": "auto | float32 | bfloat16 | float16",
    "pool.workers": "workers building and scoring individuals",
    "pool.mode": "generational | async (steady state)",
    "pool.runtime_env": "a Ray runtime_env, passed to ray.init",
    "search.bounds": "[low, high] of every coefficient",
    "search.init": "uniform (1/k each) | zeros",
    "search.objective": "fitness: maximise the fitness-set score | loss: minimise the answers' per-token loss",
    "search.tell_order": "completion: tell results as they come | ask: in ask order",
    "trust_remote_code": "let transformers run a model's own code",
}


def render_defaults() -> str:
    """The default run config: every field with its default (``evo-merge config --defaults``)."""
    return render(RunConfig.model_construct(), "The default run config: every field with its default "
                                               "(`evo-merge config --defaults`).")


def render(cfg: BaseModel, header: str) -> str:
    lines = [f"# {header}", "# Paths are relative to this file, except out (relative to the current directory)."]
    return "\n".join(lines + _fields(cfg, type(cfg), "", 0)) + "\n"


def _fields(obj: Any, model: type[BaseModel], prefix: str, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for name, field in model.model_fields.items():
        key, dotted = field.alias or name, prefix + name
        value = getattr(obj, name, _MISSING) if obj is not None else _MISSING
        comment = _comment(dotted, field)
        if isinstance(value, BaseModel):
            out += _line(pad, f"{key}:", comment or _doc(type(value)))
            out += _fields(value, type(value), dotted + ".", indent + 2)
        else:
            data = None if value is _MISSING else _jsonable(value)
            if isinstance(data, list) and len(f"{pad}{key}: {_flow(data)}") > WIDTH:  # one item a line
                out += _line(pad, f"{key}:", comment) + [f"{pad}  - {_flow(item)}" for item in data]
            else:
                out += _line(pad, f"{key}: {_flow(data)}", comment)
    return out


def _comment(dotted: str, field) -> str:
    text = field.description or NOTES.get(dotted, "")
    if text in ("{parents}", "{selectors}"):
        from evo_merge.operators.parents import PARENT_SELECTORS
        from evo_merge.operators.selection import SELECTORS

        text = " | ".join((PARENT_SELECTORS if text == "{parents}" else SELECTORS).names()) + " (registered names)"
    if not text and typing.get_origin(field.annotation) is Literal:
        text = " | ".join(str(a) for a in typing.get_args(field.annotation))
    return " ".join(text.replace("``", "`").split())


def _doc(model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or "").split()).replace("``", "`")
    return doc.split(". ")[0].split(": ")[0].rstrip(".") if doc else ""


def _line(pad: str, text: str, comment: str) -> list[str]:
    if not comment:
        return [pad + text]
    one = f"{pad}{text}  # {comment}"
    if len(one) <= WIDTH:
        return [one]
    return [pad + "# " + part for part in textwrap.wrap(comment, WIDTH - len(pad) - 2)] + [pad + text]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _flow(value: Any) -> str:
    """One value as flow-style YAML on one line."""
    return yaml.safe_dump([value], default_flow_style=True, sort_keys=False, width=10**9).strip()[1:-1]
