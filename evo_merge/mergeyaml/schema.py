"""mergekit's merge YAML as pydantic models (mergekit 0.1.5's schema), plus evo-merge's extras.

Accepted: ``merge_method``, ``base_model``, ``models`` (each with ``parameters``) or
``slices`` (each with ``sources`` that have ``layer_range`` and ``parameters``, and an
optional slice ``base_model`` / ``parameters``), global ``parameters``; a parameter value is
a scalar, a gradient (a list interpolated over the layers of a slice) or a list of
``{filter, value}`` conditions; ``tokenizer_source`` (``base`` or a model), ``dtype``,
``out_dtype``, ``chat_template`` (the template's text). evo-merge's extras: ``seed`` (random
methods), ``tie_order`` (``index``, or ``mergekit`` for its choice among tied magnitudes),
``lora_mode`` (LoRA adapters as models), ``trust_remote_code``.
Refused with one line naming the key: ``modules``, ``tokenizer`` (mergekit's vocabulary
surgery), ``tokenizer_source: union``, ``residual_weight``, named chat templates.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = Union[bool, int, float, str]
ScalarOrGradient = Union[Scalar, list[Scalar]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Condition(_Strict):
    """``{filter: SUBSTRING, value: V}``: V for tensors whose name contains SUBSTRING
    (no filter, or ``*``: every tensor)."""

    value: ScalarOrGradient
    filter: str | None = None


Setting = Union[ScalarOrGradient, Condition, list[Condition]]
Settings = dict[str, Setting]


class InputModel(_Strict):
    model: str
    parameters: Settings | None = None


class InputSlice(_Strict):
    model: str
    layer_range: tuple[int, int]
    parameters: Settings | None = None

    @model_validator(mode="after")
    def _range(self) -> InputSlice:
        lo, hi = self.layer_range
        if lo < 0 or hi <= lo:
            raise ValueError(f"layer_range [{lo}, {hi}] of {self.model} is empty or negative")
        return self


class OutputSlice(_Strict):
    sources: list[InputSlice] = Field(min_length=1)
    base_model: str | None = None
    parameters: Settings | None = None
    residual_weight: float | None = None

    @model_validator(mode="after")
    def _same_lengths(self) -> OutputSlice:
        if self.residual_weight is not None:
            raise ValueError("residual_weight is not supported by evo-merge")
        lengths = {s.layer_range[1] - s.layer_range[0] for s in self.sources}
        if len(lengths) > 1:
            raise ValueError(f"the sources of a slice must have the same number of layers, got {sorted(lengths)}")
        return self


Dtype = Literal["float32", "bfloat16", "float16", "float64"]


class MergeYaml(_Strict):
    """A mergekit merge config; exactly one of ``models`` and ``slices``."""

    merge_method: str
    base_model: str | None = None
    models: list[InputModel] | None = None
    slices: list[OutputSlice] | None = None
    parameters: Settings | None = None
    dtype: Dtype | None = None
    out_dtype: Dtype | None = None
    tokenizer_source: str | None = None
    chat_template: str | None = None
    modules: Any = None
    tokenizer: Any = None
    # evo-merge's extras
    seed: int = Field(0, ge=0)
    tie_order: Literal["index", "mergekit"] = "index"  # magnitudes tied at a TIES / breadcrumbs threshold
    lora_mode: Literal["exact", "factors", "product"] = "exact"
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _shape(self) -> MergeYaml:
        if self.modules is not None:
            raise ValueError("'modules' (per-module merges of multimodal models) is not supported; "
                             "use 'models' or 'slices'")
        if self.tokenizer is not None:
            raise ValueError("'tokenizer' (mergekit's vocabulary merging) is not supported; "
                             "use tokenizer_source: base or a model")
        if (self.models is None) == (self.slices is None) or (self.models == [] or self.slices == []):
            raise ValueError("give exactly one of 'models' and 'slices', not empty")
        if self.tokenizer_source == "union":
            raise ValueError("tokenizer_source 'union' (a merged vocabulary) is not supported; "
                             "use 'base' or a model")
        if self.chat_template is not None and "{" not in self.chat_template:
            raise ValueError(f"chat_template {self.chat_template!r}: named or 'auto' templates are not "
                             "supported; give the Jinja template's text")
        return self

    def referenced(self) -> list[str]:
        """Every model the config names, base first, in order of first mention."""
        names: list[str] = [self.base_model] if self.base_model else []
        for m in self.models or []:
            names.append(m.model)
        for s in self.slices or []:
            names += ([s.base_model] if s.base_model else []) + [src.model for src in s.sources]
        return list(dict.fromkeys(names))

    def as_slices(self, num_layers: int) -> list[OutputSlice]:
        """``models`` as mergekit reads it: one slice over every layer, the base added as a source
        when it is not among the models."""
        if self.slices is not None:
            return self.slices
        sources = [InputSlice(model=m.model, layer_range=(0, num_layers), parameters=m.parameters)
                   for m in self.models or []]
        if self.base_model and self.base_model not in {m.model for m in self.models or []}:
            sources.append(InputSlice(model=self.base_model, layer_range=(0, num_layers)))
        return [OutputSlice(sources=sources)]
