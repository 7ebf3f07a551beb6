"""The files of a merged model besides its weights: config.json, generation config, tokenizer.

``config.json`` is the base model's (else the first model's), with the layer count of a
sliced merge and the output dtype, and untied embeddings when the output has a head of its
own (a tied base merged with untied models). The tokenizer is copied from ``tokenizer_source``
(``base``: the base model; or a named model), by default from the base or the first model,
as mergekit does; ``chat_template`` is written into ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from evo_merge.errors import EvoMergeError
from evo_merge.mergeyaml.plan import MergePlan, read_json
from evo_merge.mergeyaml.schema import MergeYaml

TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer.model",
                   "added_tokens.json", "merges.txt", "vocab.json", "chat_template.jinja", "chat_template.json")


def write_config(out: Path, cfg: MergeYaml, plan: MergePlan, paths: dict[str, Path]) -> None:
    src = paths[plan.donor] / "config.json"
    if not src.is_file():
        raise EvoMergeError(f"model {plan.donor}: no config.json in {paths[plan.donor]}")
    data = read_json(src)
    target = data.get("text_config", data)
    if cfg.slices is not None:
        old = target.get("num_hidden_layers")
        target["num_hidden_layers"] = plan.num_layers
        types = target.get("layer_types")
        if isinstance(types, list) and isinstance(old, int):
            per_model = {}
            for model, index in plan.layer_sources:
                if model not in per_model:
                    other = read_json(paths[model] / "config.json")
                    per_model[model] = other.get("text_config", other).get("layer_types") or types
            if all(i < len(per_model[m]) for m, i in plan.layer_sources):
                target["layer_types"] = [per_model[m][i] for m, i in plan.layer_sources]
    if plan.untie:  # a head of its own, though the donor may have had its head tied
        for node in {id(data): data, id(target): target}.values():
            node["tie_word_embeddings"] = False
    dtype = cfg.out_dtype or cfg.dtype
    if dtype:
        for key in ("torch_dtype", "dtype"):
            if key in data or key == "dtype":
                data[key] = dtype
    (out / "config.json").write_text(json.dumps(data, indent=2) + "\n")
    generation = paths[plan.donor] / "generation_config.json"
    if generation.is_file():
        shutil.copyfile(generation, out / "generation_config.json")


def tokenizer_dir(cfg: MergeYaml, paths: dict[str, Path]) -> Path:
    source = cfg.tokenizer_source
    if source in (None, "base"):
        if source == "base" and not cfg.base_model:
            raise EvoMergeError("tokenizer_source: base needs a base_model")
        return paths[cfg.base_model or cfg.referenced()[0]]
    if source not in paths:
        raise EvoMergeError(f"tokenizer_source {source!r} is not one of the config's models")
    return paths[source]


def write_tokenizer(out: Path, cfg: MergeYaml, paths: dict[str, Path]) -> None:
    src = tokenizer_dir(cfg, paths)
    copied = [f for f in TOKENIZER_FILES if (src / f).is_file()]
    if cfg.tokenizer_source not in (None,) and "tokenizer_config.json" not in copied:
        raise EvoMergeError(f"tokenizer_source {cfg.tokenizer_source!r}: no tokenizer in {src}")
    for name in copied:
        if cfg.chat_template and name.startswith("chat_template"):
            continue
        shutil.copyfile(src / name, out / name)
    if cfg.chat_template:
        tc = out / "tokenizer_config.json"
        data = json.loads(tc.read_text()) if tc.is_file() else {}
        data["chat_template"] = cfg.chat_template
        tc.write_text(json.dumps(data, indent=2) + "\n")
