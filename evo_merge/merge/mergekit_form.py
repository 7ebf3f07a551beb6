"""The mergekit 0.1.5 config that redoes one evo-merge merge of members (model paths).

evo-merge merges task vectors (model minus base); each form below is chosen so that
mergekit, merging the members' weights, computes base + (evo-merge's result), exactly
where it can and with a note saying how it differs where it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evo_merge.merge.registry import get_merge_method

MERGEKIT_METHODS = ("linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs",
                    "breadcrumbs_ties", "della", "della_linear", "sce", "slerp", "task_slerp", "nuslerp",
                    "multislerp", "nearswap", "arcee_fusion", "passthrough", "model_stock")
FAMILY = ("task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della",
          "della_linear")
Form = tuple[dict[str, Any] | None, str | None]


def _value(v: Any, i: int) -> float:
    return float(v[i]) if isinstance(v, list) else float(v)


def _family(method: str, p: dict[str, Any], paths: Sequence[str], base: str, coeffs: Sequence[float]) -> Form:
    per_model = get_merge_method(method).per_model  # density; gamma (breadcrumbs); epsilon (della)
    models = [{"model": path, "parameters": {"weight": float(w), **{k: _value(p[k], i) for k in per_model if k in p}}}
              for i, (path, w) in enumerate(zip(paths, coeffs))]
    glob: dict[str, Any] = {"normalize": bool(p.get("normalize", False))}
    if float(p.get("lambda_", 1.0)) != 1.0:
        glob["lambda"] = float(p["lambda_"])
    notes = []
    if method != "task_arithmetic":
        glob["rescale"] = bool(p.get("rescale", False))
        if p.get("rescale") == "inverse_density":
            notes.append("evo-merge divided the kept values by their keep probability (rescale: inverse_density); "
                         "mergekit has no such rule, this config uses its L1-norm rescale instead")
    if p.get("int8_mask"):
        glob["int8_mask"] = True
    if method.startswith(("dare", "della")):
        notes.append(f"{method} drops values at random and mergekit draws its own mask, so it gives another "
                     "sample of the same recipe")
    cfg = {"merge_method": method, "base_model": base, "models": models, "parameters": glob}
    return cfg, ("mergekit_config.yml is approximate: " + "; ".join(notes)) if notes else None


def mergekit_form(method: str, p: dict[str, Any], paths: Sequence[str], base: str, coeffs: Sequence[float]) -> Form:
    """(config, note) for ``method`` with resolved parameters ``p`` over the members at ``paths``
    (``base``: the base model's path, ``coeffs``: the per-member weights); config None: no form."""
    k = len(paths)
    weighted = [{"model": path, "parameters": {"weight": float(w)}} for path, w in zip(paths, coeffs)]
    if method not in MERGEKIT_METHODS:
        return None, f"no mergekit config: merge method {method!r} has no mergekit counterpart"
    if method == "linear":
        if p["normalize"]:
            return {"merge_method": "linear", "models": weighted, "parameters": {"normalize": True}}, None
        method = "task_arithmetic"  # unnormalized: base + sum w_i (m_i - base), which is task arithmetic
    if method in FAMILY:
        return _family(method, p, paths, base, coeffs)
    if method in ("slerp", "task_slerp"):
        if k != 2:
            return None, f"no mergekit config: {method} of {k} task vector(s) has no mergekit counterpart"
        t = float(p["t"])
        models = [{"model": paths[0], "parameters": {"weight": 1.0 - t}},
                  {"model": paths[1], "parameters": {"weight": t}}]
        note = ("mergekit_config.yml is approximate: evo-merge interpolated the task vectors with slerp (lerp "
                "when |cos| > 0.9995), mergekit's nuslerp over the base does the same but lerps only exactly "
                "colinear vectors")
        return {"merge_method": "nuslerp", "base_model": base, "models": models}, note
    if method == "model_stock":
        return {"merge_method": "model_stock", "base_model": base, "models": [{"model": q} for q in paths]}, None
    if method == "sce":
        glob: dict[str, Any] = {"select_topk": float(p["select_topk"])}
        if p["int8_mask"]:
            glob["int8_mask"] = True
        return {"merge_method": "sce", "base_model": base, "models": [{"model": q} for q in paths],
                "parameters": glob}, None
    if method == "nuslerp":
        return {"merge_method": "nuslerp", "base_model": base, "models": weighted,
                "parameters": {"nuslerp_row_wise": bool(p["nuslerp_row_wise"]),
                               "nuslerp_flatten": bool(p["nuslerp_flatten"])}}, None
    if method == "multislerp":
        return {"merge_method": "multislerp", "base_model": base, "models": weighted,
                "parameters": {"normalize_weights": bool(p["normalize_weights"]), "eps": float(p["eps"])}}, None
    if method in ("nearswap", "arcee_fusion"):  # parent 0 (one parent: the base) plays mergekit's base
        first = paths[0] if k == 2 else base
        cfg = {"merge_method": method, "base_model": first, "models": [{"model": first}, {"model": paths[-1]}]}
        if method == "nearswap":
            return {**cfg, "parameters": {"t": float(p["t"])}}, None
        return cfg, ("mergekit_config.yml is approximate: evo-merge's arcee_fusion scored importance on task "
                     "vectors (softmax of model minus base), mergekit scores the models' weights")
    if p["scale"] is None:  # passthrough
        return {"merge_method": "passthrough", "models": [{"model": paths[0]}]}, None
    scale = _value(p["scale"], 0)  # scaling a task vector is task arithmetic over the base
    return _family("task_arithmetic", {"normalize": False}, paths, base, [scale])
