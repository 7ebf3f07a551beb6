"""Fitness task specs: dataset, prompt, answer extraction, metric and a seeded fitness/test split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from evo_merge.yamlfile import load_model
from evo_merge.errors import EvoMergeError
from evo_merge.fitness.lm_eval_task import LmEvalSpec

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    path: str
    name: str | None = None
    split: str = "train"
    revision: str | None = None


class TaskSpec(BaseModel):
    """One task: where its examples come from and how a model is scored on them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str
    description: str = ""
    dataset: DatasetSpec | None = None
    lm_eval: LmEvalSpec | None = Field(None, description="an lm-eval-harness task instead of dataset and prompt: "
                                       "lm-eval builds the requests and computes the metric")
    prompt: str = "{question}"
    answer_field: str = "answer"
    choices_field: str | None = None
    metric: str = "mc_loglik"
    answer_regex: str | None = None
    max_new_tokens: int = Field(16, ge=1)
    stop: list[str] = Field(default_factory=list, description="exact_match: generation of a row stops at any of "
                            "these strings (and once answer_regex matches)")
    chat_template: bool = Field(False, description="wrap the prompt as the user turn of the tokenizer's chat "
                                "template (instruction-tuned bases such as gemma-2-2b-it)")
    choices_in_prompt: bool = Field(False, description="list the choices after the question as 'A. ...', "
                                    "followed by answer_prefix; the letters are what is scored (MMLU, ARC)")
    answer_prefix: str = "Answer:"
    add_bos: Literal["auto"] | bool = Field("auto", description="put the BOS token in front of each prompt: auto "
                                            "(where the tokenizer has one but does not add it), true, false "
                                            "(no special tokens at all), as lm-eval's add_bos_token")
    fitness_samples: int = Field(200, ge=1)
    test_samples: int = Field(200, ge=1)
    split_seed: int = 0
    test_split: Literal["after_fitness", "last"] = Field(
        "after_fitness", description="test rows follow the fitness rows in the seeded order, or are its last "
        "rows (the same test set whatever fitness_samples is)")

    @model_validator(mode="after")
    def _mc_needs_choices(self) -> "TaskSpec":
        if (self.dataset is None) == (self.lm_eval is None):
            raise ValueError("give either dataset (with prompt, answer_field, metric) or lm_eval")
        if self.lm_eval is not None:
            self.metric = "lm_eval"
            return self
        for field in prompt_fields(self.prompt):
            if not field.isidentifier():
                raise ValueError(f"prompt field {{{field}}}: only plain field names ({{question}}), no attribute or "
                                 "index access and no positional {}")
        if (self.metric == "mc_loglik" or self.choices_in_prompt) and not self.choices_field:
            raise ValueError(f"{'choices_in_prompt' if self.choices_in_prompt else 'metric mc_loglik'} needs "
                             "choices_field")
        return self


@dataclass
class Task:
    """A loaded task: its spec, and the fitness and test examples (disjoint)."""

    spec: TaskSpec
    fitness: list[dict[str, Any]]
    test: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.spec.name

    def digest(self) -> str:
        """Hash of the spec and both splits' examples: a resumed run must score the same data."""
        text = json.dumps([self.spec.model_dump(mode="json"), self.fitness, self.test], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def examples(self, split: str) -> list[dict[str, Any]]:
        if split not in ("fitness", "test"):
            raise ValueError(f"unknown split {split!r}")
        return self.fitness if split == "fitness" else self.test


def load_task(spec_path: Path, overrides: dict[str, Any] | None = None) -> Task:
    """Read a task spec, load its dataset and split it with the spec's seed."""
    spec_path = Path(spec_path)
    spec: TaskSpec = load_model(TaskSpec, spec_path, "task spec", overrides)
    if spec.lm_eval is not None:
        from evo_merge.fitness.lm_eval_task import lm_eval_documents, resolve_include_path

        spec.lm_eval = resolve_include_path(spec.lm_eval, spec_path.resolve().parent)
        rows = lm_eval_documents(spec.lm_eval)
    else:
        rows = _load_rows(spec, spec_path.resolve().parent)
    need = spec.fitness_samples + spec.test_samples
    if not rows:
        raise EvoMergeError(f"task {spec.name}: dataset is empty")
    if len(rows) < need:
        raise EvoMergeError(f"task {spec.name}: dataset has {len(rows)} examples, fewer than "
                            f"fitness_samples + test_samples = {need}")
    if spec.lm_eval is None:
        _check_fields(spec, rows)
    order = np.random.default_rng(spec.split_seed).permutation(len(rows))
    fit = [rows[i] for i in order[: spec.fitness_samples]]
    start = spec.fitness_samples if spec.test_split == "after_fitness" else len(rows) - spec.test_samples
    test = [rows[i] for i in order[start: start + spec.test_samples]]
    return Task(spec, fit, test)


def _load_rows(spec: TaskSpec, here: Path) -> list[dict[str, Any]]:
    import datasets

    ds_spec = spec.dataset
    local = Path(ds_spec.path) if Path(ds_spec.path).is_absolute() else here / ds_spec.path
    suffix = local.suffix.lower()
    datasets.disable_progress_bars()
    try:
        if suffix in LOCAL_FORMATS:
            if not local.is_file():
                raise EvoMergeError(f"task {spec.name}: data file not found: {local}")
            if local.stat().st_size == 0:
                raise EvoMergeError(f"task {spec.name}: dataset is empty: {local}")
            ds = datasets.load_dataset(LOCAL_FORMATS[suffix], data_files=str(local), split="train")
        else:
            ds = datasets.load_dataset(ds_spec.path, ds_spec.name, split=ds_spec.split, revision=ds_spec.revision)
    except EvoMergeError:
        raise
    except Exception as exc:  # datasets raises many types for bad files and unreachable hubs
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EvoMergeError(f"task {spec.name}: cannot load dataset {ds_spec.path!r}: {first[:200]}") from None
    return [dict(r) for r in ds]


def prompt_fields(prompt: str) -> list[str]:
    """The replacement fields of a prompt template ('' for a positional {})."""
    import string

    try:
        return [f for _, f, _, _ in string.Formatter().parse(prompt) if f is not None]
    except ValueError as exc:
        raise ValueError(f"prompt is not a valid template: {exc}") from None


def _check_fields(spec: TaskSpec, rows: list[dict[str, Any]]) -> None:
    """Every row has every field the prompt, the answer and the choices need, with a value."""
    needed = [*prompt_fields(spec.prompt), spec.answer_field] + ([spec.choices_field] if spec.choices_field else [])
    for f in dict.fromkeys(needed):
        if f not in rows[0]:
            raise EvoMergeError(f"task {spec.name}: field {f!r} not in dataset (fields: {sorted(rows[0])})")
        for i, row in enumerate(rows):
            if row.get(f) is None:
                raise EvoMergeError(f"task {spec.name}: row {i} has no value for field {f!r}")
