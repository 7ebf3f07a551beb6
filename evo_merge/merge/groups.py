"""Tensor groups: which coefficient of a per-group merge recipe applies to which tensor.

A coefficient search may give each parent one coefficient for the whole genome
(``parent``), one per block of consecutive layers (``layers``, mergekit-evolve's layer
granularity), or one per tensor-name filter (``filters``, e.g. ``self_attn`` and ``mlp``).
Groups are a pure function of the tensor names, so a recipe that records the granularity
rebuilds the same assignment anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from evo_merge.errors import EvoMergeError

Granularity = Literal["parent", "layers", "filters", "split", "cuts"]
_LAYER = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")


@dataclass(frozen=True)
class TensorGroups:
    """``labels[g]`` names group g; ``of[i]`` is the group of the layout's i-th tensor."""

    labels: tuple[str, ...]
    of: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.labels)


def layer_index(name: str) -> int | None:
    """The decoder layer a tensor belongs to (``model.layers.7.mlp...`` -> 7), else None."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def tensor_groups(names: Sequence[str], granularity: Granularity = "parent", layer_groups: int | None = 1,
                  filters: Sequence[str] = (), split_layer: int = 1, cuts: Sequence[int] = ()) -> TensorGroups:
    """Assign each tensor name to a group; every group holds at least one tensor (for 'split',
    the tensors before layer ``split_layer``, embeddings included, then the rest)."""
    if granularity == "parent":
        return TensorGroups(("all",), (0,) * len(names))
    if granularity == "layers":
        return _by_layers(names, layer_groups)
    if granularity == "filters":
        return _by_filters(names, filters)
    if granularity == "split":
        return _by_split(names, split_layer)
    if granularity == "cuts":
        return _by_cuts(names, cuts)
    raise EvoMergeError(f"unknown granularity {granularity!r} (known: parent, layers, filters, split, cuts)")


def _by_layers(names: Sequence[str], layer_groups: int | None) -> TensorGroups:
    """``layer_groups`` blocks of consecutive layers (None: one per layer)."""
    layers = [layer_index(n) for n in names]
    present = sorted({i for i in layers if i is not None})
    if not present:
        raise EvoMergeError("granularity 'layers': no tensor name has a layer index (like '.layers.3.')")
    n_layers = present[-1] + 1
    layer_groups = n_layers if layer_groups is None else layer_groups
    if layer_groups < 1 or layer_groups > n_layers:
        raise EvoMergeError(f"layer_groups must be between 1 and the {n_layers} layers, got {layer_groups}")
    block = [i * layer_groups // n_layers for i in range(n_layers)]
    labels = []
    for g in range(layer_groups):
        members = [i for i in range(n_layers) if block[i] == g]
        labels.append(f"layers {members[0]}-{members[-1]}")
    of = [block[i] if i is not None else layer_groups for i in layers]
    if any(i is None for i in layers):
        labels.append("other")
    return TensorGroups(tuple(labels), tuple(of))


def _by_filters(names: Sequence[str], filters: Sequence[str]) -> TensorGroups:
    if not filters:
        raise EvoMergeError("granularity 'filters' needs a list of tensor-name filters")
    of = []
    for name in names:
        hit = next((g for g, f in enumerate(filters) if f in name), len(filters))
        of.append(hit)
    for g, f in enumerate(filters):
        if g not in of:
            raise EvoMergeError(f"tensor-name filter {f!r} matches no tensor (or only tensors an earlier "
                                "filter already took)")
    labels = list(filters) + (["rest"] if len(filters) in of else [])
    return TensorGroups(tuple(labels), tuple(of))


def _by_split(names: Sequence[str], split_layer: int) -> TensorGroups:
    """Layers before ``split_layer`` (and tensors outside layers whose name says 'embed') form
    group 0; later layers and the other outside tensors (final norm, LM head) group 1."""
    def before(name: str) -> bool:
        i = layer_index(name)
        return "embed" in name if i is None else i < split_layer

    of = tuple(0 if before(n) else 1 for n in names)
    labels = (f"before layer {split_layer}", f"from layer {split_layer}")
    if len(set(of)) == 1:  # everything on one side: one group
        return TensorGroups((labels[of[0]] if of else labels[0],), (0,) * len(names))
    return TensorGroups(labels, of)


def _by_cuts(names: Sequence[str], cuts: Sequence[int]) -> TensorGroups:
    """Blocks of consecutive layers between the ``cuts`` (layer indices where a block starts);
    tensors outside layers go with the first block ('embed') or the last (the rest). Empty
    blocks are dropped."""
    bounds = sorted(set(int(c) for c in cuts))

    def block(name: str) -> int:
        i = layer_index(name)
        if i is None:
            return 0 if "embed" in name else len(bounds)
        return sum(1 for c in bounds if i >= c)

    raw = [block(n) for n in names]
    used = sorted(set(raw))
    edges = [0, *bounds]
    labels = tuple(f"layers {edges[b]}-" + (f"{bounds[b] - 1}" if b < len(bounds) else "end") for b in used)
    return TensorGroups(labels, tuple(used.index(b) for b in raw))


def groups_from_params(names: Sequence[str], params: dict[str, Any]) -> TensorGroups:
    """The groups a recipe's ``params['groups']`` entry describes."""
    spec = params.get("groups") or {"granularity": "parent"}
    return tensor_groups(names, spec.get("granularity", "parent"), spec.get("layer_groups", 1),
                         spec.get("filters", ()), spec.get("split_layer", 1), spec.get("cuts", ()))
