"""Member weights per tensor collapsed into readable rows: whole layers (consecutive equal
layers joined), module parts of a layer where they differ, tensors outside the layers."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from evo_merge.merge.groups import layer_index

_LAYER = re.compile(r"\.(?:layers|h|blocks|layer)\.\d+\.")


def collapse(tensors: Sequence[str], x: np.ndarray, tol: float = 1e-9) -> list[tuple[str, np.ndarray]]:
    """Rows of identical weights merged: whole layers first (consecutive equal layers joined),
    then module parts within a layer where they differ; tensors outside layers last."""
    if len(tensors) == 1 or np.allclose(x, x[0], atol=tol, rtol=0):
        return [("all tensors", x[0])]
    by_layer: dict[int | None, list[int]] = {}
    for i, name in enumerate(tensors):
        by_layer.setdefault(layer_index(name), []).append(i)
    out: list[tuple[str, np.ndarray]] = []
    run: tuple[int, int, np.ndarray] | None = None  # first layer, last layer, weights

    def flush() -> None:
        if run is not None:
            a, b, w = run
            out.append((f"layer {a}" if a == b else f"layers {a}-{b}", w))

    for layer in sorted(i for i in by_layer if i is not None):
        idx = by_layer[layer]
        if np.allclose(x[idx], x[idx[0]], atol=tol, rtol=0):
            if run is not None and run[1] == layer - 1 and np.allclose(run[2], x[idx[0]], atol=tol, rtol=0):
                run = (run[0], layer, run[2])
            else:
                flush()
                run = (layer, layer, x[idx[0]])
            continue
        flush()
        run = None
        out.extend((f"layer {layer} {part}", w) for part, w in _parts(tensors, idx, x, tol))
    flush()
    if None in by_layer:
        out.extend((f"outside layers: {part}", w) for part, w in _parts(tensors, by_layer[None], x, tol))
    return out


_LEAF = {"weight", "bias", "lora_A", "lora_B", "default"}


def _part(name: str) -> str:
    """The module part of a tensor name: ``self_attn`` or ``mlp`` inside a layer, else the
    module's own name (``embed_tokens``, ``norm``, ``lm_head``)."""
    if _LAYER.search(name):
        return _LAYER.split(name)[-1].split(".")[0]
    parts = [p for p in name.split(".") if p not in _LEAF]
    return parts[-1] if parts else name


def _parts(tensors: Sequence[str], idx: list[int], x: np.ndarray, tol: float) -> list[tuple[str, np.ndarray]]:
    """Tensors of one layer (or outside layers) grouped by their weights, labelled by module."""
    groups: list[tuple[np.ndarray, list[str]]] = []
    for i in idx:
        part = _part(tensors[i])
        for w, parts in groups:
            if np.allclose(w, x[i], atol=tol, rtol=0):
                if part not in parts:
                    parts.append(part)
                break
        else:
            groups.append((x[i], [part]))
    return [(", ".join(parts[:3]) + (f" +{len(parts) - 3}" if len(parts) > 3 else ""), w) for w, parts in groups]
