"""Merge whole genomes with a registered method: the hot path of the search.

Elementwise methods run once over the parents' flat buffers; the others run per tensor
name, writing into views of one preallocated output buffer. LoRA genomes may instead be
merged through their B @ A products (``lora_mode="product"``, see ``lora.py``).
``merge_genomes_grouped`` gives each tensor group its own row of weights (per-layer or
per-tensor-filter recipes).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.merge.lora import lora_pairs, merge_lora_product
from evo_merge.merge.registry import MergeMethod, get_merge_method

LoraMode = Literal["factors", "product"]


def _weights(weights: Sequence[float] | torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
    w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
    if w.numel() != k:
        raise EvoMergeError(f"merge: {w.numel()} weights for {k} parents")
    if not bool(torch.isfinite(w).all()):
        raise EvoMergeError(f"merge: weights must be finite, got {w.tolist()}")
    return w.to(device)


def merge_genomes(method: str | MergeMethod, parents: Sequence[Genome],
                  weights: Sequence[float] | torch.Tensor, *, seed: int | None = None,
                  params: dict[str, Any] | None = None, lora_mode: LoraMode = "factors") -> Genome:
    """Merge ``parents`` (one shared layout) into a new genome; same inputs and seed give a
    bit-identical result. ``seed`` is required by methods that use randomness."""
    m = get_merge_method(method) if isinstance(method, str) else method
    if not parents:
        raise EvoMergeError(f"merge method {m.name!r}: no parents")
    layout = parents[0].layout
    device = parents[0].flat.device
    for i, parent in enumerate(parents[1:], 1):
        layout.check_same(parent.layout, what=f"parent {i}")
        if parent.flat.device != device:
            raise EvoMergeError(f"parent {i}: on {parent.flat.device}, parent 0 on {device}")
    if lora_mode not in ("factors", "product"):
        raise EvoMergeError(f"lora_mode must be 'factors' or 'product', got {lora_mode!r}")
    if lora_mode == "product" and layout.kind != "lora":  # (lora_exact genomes are exact in any mode)
        raise EvoMergeError(f"lora_mode 'product' needs LoRA genomes, these are {layout.kind!r}")
    w = _weights(weights, len(parents), device)
    resolved = m.resolve_params(params)
    generator = None
    if m.uses_random:
        if seed is None:
            raise EvoMergeError(f"merge method {m.name!r} is random: give a seed")
        generator = torch.Generator(device=device).manual_seed(seed)

    if layout.kind == "lora_exact" and not m.linear:
        child = _merge_updates(m, parents, w, generator, resolved)
    elif lora_mode == "product":
        merged = merge_lora_product(m, [p.tensors() for p in parents], w, generator=generator,
                                    params=resolved)
        child = _assemble(parents[0], merged)
    elif m.is_elementwise(resolved):
        flat = m([p.flat for p in parents], w, generator=generator, **resolved)
        child = parents[0].with_flat(flat)
    else:
        per_parent = [p.tensors() for p in parents]
        child = Genome(layout, torch.empty(layout.numel, dtype=layout.dtype, device=device), parents[0].basis)
        for name, view in child.tensors().items():
            view.copy_(m([t[name] for t in per_parent], w, generator=generator, **resolved))
    if layout.kind == "lora_exact" and child.basis.max_rank is not None:
        child = _assemble(child, {n: child.basis.truncate(n, t) if child.basis.prefix(n) else t
                                  for n, t in child.tensors().items()})
    _check_child(child, parents, m.name)
    return child


def merge_genomes_grouped(method: str | MergeMethod, parents: Sequence[Genome], weights: torch.Tensor,
                          groups: Sequence[int], *, seed: int | None = None, params: dict[str, Any] | None = None,
                          lora_mode: LoraMode = "factors") -> Genome:
    """Merge with weights per tensor group: ``weights`` is (G, k), ``groups[i]`` the group of
    the layout's i-th tensor. One group is exactly ``merge_genomes``."""
    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.dim() != 2 or w.shape[1] != len(parents):
        raise EvoMergeError(f"grouped merge: weights of shape {list(w.shape)}, expected (groups, {len(parents)})")
    if w.shape[0] == 1:
        return merge_genomes(method, parents, w[0], seed=seed, params=params, lora_mode=lora_mode)
    m = get_merge_method(method) if isinstance(method, str) else method
    if not parents:
        raise EvoMergeError(f"merge method {m.name!r}: no parents")
    layout = parents[0].layout
    if len(groups) != len(layout.names) or max(groups) >= w.shape[0]:
        raise EvoMergeError(f"grouped merge: {len(groups)} group indices for {len(layout.names)} tensors "
                            f"and {w.shape[0]} weight rows")
    for i, parent in enumerate(parents[1:], 1):
        layout.check_same(parent.layout, what=f"parent {i}")
    per_group: dict[int, list[str]] = {}
    for name, g in zip(layout.names, groups):
        per_group.setdefault(g, []).append(name)
    if lora_mode == "product":
        group_of = dict(zip(layout.names, groups))
        for a_name, b_name in lora_pairs(layout.names)[0].values():
            if group_of[a_name] != group_of[b_name]:
                raise EvoMergeError(f"lora_mode 'product' needs {a_name} and {b_name} in one coefficient group")
    views = [p.tensors() for p in parents]
    merged: dict[str, torch.Tensor] = {}
    for g, names in per_group.items():
        subs = [Genome.from_tensors({n: v[n] for n in names}, layout.kind, check_finite=False, basis=p.basis)
                for v, p in zip(views, parents)]
        child = merge_genomes(m, subs, w[g], seed=None if seed is None else seed + g, params=params,
                              lora_mode=lora_mode)
        merged.update(child.tensors())
    return _assemble(parents[0], merged)


def _merge_updates(m: MergeMethod, parents: Sequence[Genome], w: torch.Tensor, generator: torch.Generator | None,
                   params: dict[str, Any]) -> Genome:
    """A method that is not linear in the weights, on exact-LoRA genomes: applied to each module's
    update B A_cat (what it is defined on), the result projected back onto the shared basis."""
    basis = parents[0].basis
    per_parent = [p.tensors() for p in parents]
    merged = {}
    for name in parents[0].layout.names:
        ts = [t[name] for t in per_parent]
        if basis.prefix(name) is None:
            merged[name] = m(ts, w, generator=generator, **params)
        else:
            update = m([basis.update(name, t) for t in ts], w, generator=generator, **params)
            merged[name] = basis.project(name, update)
    return _assemble(parents[0], merged)


def _assemble(like: Genome, tensors: dict[str, torch.Tensor]) -> Genome:
    """Write named tensors into a new buffer with ``like``'s layout."""
    child = Genome(like.layout, torch.empty_like(like.flat), like.basis)
    for name, view in child.tensors().items():
        if tensors[name].shape != view.shape:
            raise EvoMergeError(f"merged tensor {name} has shape {list(tensors[name].shape)}, "
                                f"expected {list(view.shape)}")
        view.copy_(tensors[name])
    return child


def _check_child(child: Genome, parents: Sequence[Genome], method: str) -> None:
    """Raise if the result is not finite, naming a non-finite parent when there is one."""
    if bool(torch.isfinite(child.flat).all()):
        return
    for i, parent in enumerate(parents):
        parent.check_finite(f"parent {i}")
    child.check_finite(f"merge method {method!r} result")
