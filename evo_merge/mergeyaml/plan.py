"""Plan a mergekit-YAML merge: every output tensor, its inputs and its resolved parameters.

Tensors are named as in Hugging Face checkpoints; a tensor of layer i is one whose name has
``<prefix>.layers.<i>.`` (or ``.h.``, ``.blocks.``). ``slices`` stack layer ranges (output
layers numbered in order); tensors outside the layers take their sources from the first
slice (embeddings: names with ``embed``, ``wte`` or ``wpe``) or the last (final norm, head),
at t = 0, as mergekit does. Every parameter is resolved and validated here, before any
output exists, so a bad config fails in one line without a half-written model.

The output head (``lm_head.weight``) is optional, as in mergekit's architecture files: a
model with tied embeddings has none, and stands in with its input embedding when others
have one; when no model has one, the output has none either (tied).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.merge.registry import MergeMethod
from evo_merge.mergeyaml.params import names_in, resolve
from evo_merge.mergeyaml.schema import MergeYaml, OutputSlice
from evo_merge.mergeyaml.tensor_files import TensorReader

LAYER = re.compile(r"^(?P<pre>(?:.*\.)?(?:layers|h|blocks|block))\.(?P<idx>\d+)\.(?P<rest>.+)$")
PRE = ("embed", "wte", "wpe")
HEAD = "lm_head.weight"
INPUT_EMBEDDING = ("embed_tokens.weight", "wte.weight")  # what a tied head is (mergekit's tied_names)


@dataclass
class TensorTask:
    """One output tensor: inputs (model, tensor name), the base's tensor name (or None)."""

    name: str
    inputs: list[tuple[str, str]]
    base: tuple[str, str] | None
    weights: list[float]
    params: dict[str, Any]
    dtype: torch.dtype
    shape: tuple[int, ...]
    copy: bool = False  # not floating point: copied from the first input


@dataclass
class MergePlan:
    tasks: list[TensorTask]
    layer_sources: list[tuple[str, int]]  # per output layer: (model, its layer index)
    donor: str  # the model whose config.json the output starts from
    untie: bool = False  # the output has a head of its own, merged with tied models' embeddings

    @property
    def num_layers(self) -> int:
        return len(self.layer_sources)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; an unreadable or malformed file is one line naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EvoMergeError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise EvoMergeError(f"{path}: expected a JSON object")
    return data


def num_layers_of(reader: TensorReader) -> int:
    cfg = reader.directory / "config.json"
    if cfg.is_file():
        data = read_json(cfg)
        data = data.get("text_config", data)
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(data.get(key), int):
                return data[key]
    idx = [int(m["idx"]) for n in reader.infos if (m := LAYER.match(n))]
    return max(idx) + 1 if idx else 0


class Planner:
    def __init__(self, cfg: MergeYaml, method: MergeMethod, readers: dict[str, TensorReader]):
        self.cfg, self.method, self.readers = cfg, method, readers
        self.per_model = method.per_model | {"weight"}
        self.shared = {f.alias or n for n, f in method.entry.params.model_fields.items()} - self.per_model
        self._validated: dict[str, dict[str, Any]] = {}
        self.untie = False

    def plan(self) -> MergePlan:
        cfg = self.cfg
        donor = cfg.base_model or cfg.referenced()[0]
        layers = num_layers_of(self.readers[donor])
        if cfg.slices is None and layers < 1:
            raise EvoMergeError(f"model {donor}: no layers found (no num_hidden_layers in its config.json "
                                "and no tensor named like model.layers.N.*)")
        slices = cfg.as_slices(layers)
        self._check_names(slices)
        tasks: list[TensorTask] = []
        pre = [n for n in self._names_outside_layers(slices[0]) if any(p in n for p in PRE)]
        post = [n for n in self._names_outside_layers(slices[-1]) if not any(p in n for p in PRE)]
        for n in pre:
            self._add(tasks, n, [(s.model, n) for s in slices[0].sources], slices[0], 0.0)
        out_layer, layer_sources = 0, []
        for sl in slices:
            length = sl.sources[0].layer_range[1] - sl.sources[0].layer_range[0]
            for offset in range(length):
                t = offset / (length - 1) if length > 1 else 1.0
                lead = sl.sources[0]
                names = self._layer_names(lead.model, lead.layer_range[0] + offset)
                for pre_name, rest in names:
                    inputs = [(s.model, f"{pre_name}.{s.layer_range[0] + offset}.{rest}") for s in sl.sources]
                    self._add(tasks, f"{pre_name}.{out_layer}.{rest}", inputs, sl, t)
                layer_sources.append((lead.model, lead.layer_range[0] + offset))
                out_layer += 1
        for n in post:
            self._add(tasks, n, [(s.model, n) for s in slices[-1].sources], slices[-1], 0.0)
        if not tasks:
            raise EvoMergeError("the merge has no tensors to write")
        return MergePlan(tasks, layer_sources, donor, self.untie)

    def _names_outside_layers(self, sl: OutputSlice) -> list[str]:
        """A slice's tensor names outside the layers: its first model's, and the head where only
        later ones have it (the first one's is tied)."""
        names = {n: None for n in self.readers[sl.sources[0].model].infos if not LAYER.match(n)}
        for src in sl.sources[1:]:
            names.update((n, None) for n in self.readers[src.model].infos if n.split(".")[-2:] == HEAD.split("."))
        return list(names)

    def _tied_input(self, model: str, name: str) -> tuple[str, str] | None:
        """A model without its own head: its input embedding, which its head is tied to."""
        if name.split(".")[-2:] != HEAD.split("."):
            return None
        found = [n for n in self.readers[model].infos if n.endswith(INPUT_EMBEDDING)]
        return (model, found[0]) if len(found) == 1 else None

    def _layer_names(self, model: str, index: int) -> list[tuple[str, str]]:
        found = [(m["pre"], m["rest"]) for n in self.readers[model].infos
                 if (m := LAYER.match(n)) and int(m["idx"]) == index]
        if not found:
            raise EvoMergeError(f"model {model} has no layer {index}")
        return found

    def _check_names(self, slices: list[OutputSlice]) -> None:
        known = self.per_model | self.shared
        scopes = [self.cfg.parameters] + [s.parameters for s in slices] + \
                 [src.parameters for s in slices for src in s.sources]
        for name in sorted(names_in(scopes)):
            if name not in known:
                raise EvoMergeError(f"parameter {name!r} is not a parameter of merge method {self.method.name!r} "
                                    f"(known: {', '.join(sorted(known))})")

    def _base_of(self, sl: OutputSlice) -> str | None:
        return sl.base_model or self.cfg.base_model

    def _add(self, tasks: list[TensorTask], out_name: str, inputs: list[tuple[str, str]], sl: OutputSlice,
             t: float) -> None:
        present = [(m, n) for m, n in inputs if n in self.readers[m].infos]
        if not present:
            return
        if len(present) != len(inputs):
            missing = sorted({m for m, n in inputs if n not in self.readers[m].infos})
            inputs = [(m, n) if n in self.readers[m].infos else self._tied_input(m, n) or (m, n) for m, n in inputs]
            if any(n not in self.readers[m].infos for m, n in inputs):
                raise EvoMergeError(f"tensor {present[0][1]} is missing from {', '.join(missing)}")
            self.untie = True  # (only a head gets here)
        info = self.readers[inputs[0][0]].infos[inputs[0][1]]
        for m, n in inputs[1:]:
            if self.readers[m].infos[n].shape != info.shape:
                raise EvoMergeError(f"tensor {n}: shape {list(self.readers[m].infos[n].shape)} in {m}, "
                                    f"{list(info.shape)} in {inputs[0][0]}")
        want = self.cfg.out_dtype or self.cfg.dtype
        dtype = getattr(torch, want) if want and info.dtype.is_floating_point else info.dtype  # (a schema Dtype)
        if not info.dtype.is_floating_point:
            tasks.append(TensorTask(out_name, inputs[:1], None, [1.0], {}, dtype, info.shape, copy=True))
            return
        base_model = self._base_of(sl)
        base = next(((m, n) for m, n in inputs if m == base_model), None)
        if base is None and base_model is not None and self.method.base != "none":
            raise EvoMergeError(f"the base model {base_model} must be one of the slice's sources "
                                "(mergekit reads the base from the sources)")
        if self.method.space == "delta" or self.method.base != "none":
            if base is None and (self.method.space == "delta" or self.method.base == "required"):
                raise EvoMergeError(f"merge method {self.method.name!r} needs a base_model")
            inputs = [(m, n) for m, n in inputs if m != base_model]
        else:
            base = None
        if not inputs:
            raise EvoMergeError(f"merge method {self.method.name!r}: no models besides the base")
        scopes = {s.model: [s.parameters, sl.parameters, self.cfg.parameters] for s in sl.sources}
        glob = [sl.parameters, self.cfg.parameters]
        params: dict[str, Any] = {}
        for name in self.shared:
            v = resolve(name, glob, out_name, t)
            if v is not None:
                params[name] = v
        weights = []
        for m, n in inputs:
            w = resolve("weight", scopes.get(m, glob), n, t)
            weights.append(1.0 if w is None else float(w))
        for name in self.per_model - {"weight"}:
            values = [resolve(name, scopes.get(m, glob), n, t) for m, n in inputs]
            if any(v is not None for v in values):
                default = self._field_default(name)
                params[name] = [default if v is None else v for v in values]
        tasks.append(TensorTask(out_name, inputs, base, weights, self._validate(params), dtype, info.shape))

    def _field_default(self, name: str) -> Any:
        fields = self.method.entry.params.model_fields
        f = fields.get(name) or fields.get(name + "_")
        return None if f is None or f.is_required() else f.default

    def _validate(self, params: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in self._validated:
            self._validated[key] = self.method.resolve_params(params)
        return self._validated[key]


def open_readers(paths: dict[str, Path]) -> dict[str, TensorReader]:
    return {ref: TensorReader(p) for ref, p in paths.items()}
