"""LoRA product merging: merge each module's update B @ A, then factor it back to rank r.

Merging A and B factors separately does not merge the updates they encode
(mean(B_i) @ mean(A_i) != mean(B_i @ A_i)); merging the products does, at the cost of one
truncated SVD per module. Names follow PEFT's saved keys: ``<prefix>.lora_A.weight``
(r x in) and ``<prefix>.lora_B.weight`` (out x r).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.merge.registry import MergeMethod, get_merge_method

LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"


def lora_pairs(names: Sequence[str]) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Split names into {module prefix: (A name, B name)} and the names outside any pair."""
    present = set(names)
    pairs: dict[str, tuple[str, str]] = {}
    others: list[str] = []
    for name in sorted(present):
        if name.endswith(LORA_A):
            prefix = name[: -len(LORA_A)]
            if prefix + LORA_B not in present:
                raise EvoMergeError(f"LoRA tensor {name} has no matching {prefix}{LORA_B}")
            pairs[prefix] = (name, prefix + LORA_B)
        elif name.endswith(LORA_B):
            prefix = name[: -len(LORA_B)]
            if prefix + LORA_A not in present:
                raise EvoMergeError(f"LoRA tensor {name} has no matching {prefix}{LORA_A}")
        else:
            others.append(name)
    return pairs, others


def _module_rank(prefix: str, As: Sequence[torch.Tensor], Bs: Sequence[torch.Tensor]) -> int:
    """The rank shared by every parent's A (r x in) and B (out x r) of one module."""
    ranks = []
    for i, (a, b) in enumerate(zip(As, Bs)):
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise EvoMergeError(f"LoRA module {prefix}: parent {i} has A {list(a.shape)} and B "
                                f"{list(b.shape)}, expected r x in and out x r")
        ranks.append(a.shape[0])
        if a.shape != As[0].shape or b.shape != Bs[0].shape:
            raise EvoMergeError(f"LoRA module {prefix}: parent {i} has rank {a.shape[0]} and A "
                                f"{list(a.shape)}, parent 0 has rank {ranks[0]} and A {list(As[0].shape)}")
    return ranks[0]


def factorize(product: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors (B, A) of ``product`` by truncated SVD:
    B = U_r sqrt(S_r), A = sqrt(S_r) Vh_r; zero-padded when the matrix is smaller than ``rank``."""
    U, S, Vh = torch.linalg.svd(product, full_matrices=False)
    m = min(rank, S.numel())
    root = S[:m].sqrt()
    B = product.new_zeros(product.shape[0], rank)
    A = product.new_zeros(rank, product.shape[1])
    B[:, :m] = U[:, :m] * root
    A[:m] = root[:, None] * Vh[:m]
    return B, A


def merge_lora_product(method: str | MergeMethod, parents_tensors: Sequence[Mapping[str, torch.Tensor]],
                       weights: Sequence[float] | torch.Tensor, *, generator: torch.Generator | None,
                       params: Mapping[str, Any] | None = None,
                       rank: int | None = None) -> dict[str, torch.Tensor]:
    """Merge LoRA adapters through their products B_i @ A_i, refactored to ``rank``
    (default: the parents' rank). Tensors outside A/B pairs are merged directly."""
    m = get_merge_method(method) if isinstance(method, str) else method
    if not parents_tensors:
        raise EvoMergeError("LoRA product merge: no parents")
    if rank is not None and rank < 1:
        raise EvoMergeError(f"LoRA product merge: rank must be a positive integer, got {rank}")
    names = sorted(parents_tensors[0])
    for i, tensors in enumerate(parents_tensors[1:], 1):
        if sorted(tensors) != names:
            diff = sorted(set(names) ^ set(tensors))
            raise EvoMergeError(f"LoRA product merge: parent {i} tensor names differ from parent 0 "
                                f"({diff[:3]})")
    if not names:
        raise EvoMergeError("LoRA product merge: no tensors")
    pairs, others = lora_pairs(names)
    device = parents_tensors[0][names[0]].device
    w = torch.as_tensor(weights, dtype=torch.float32).to(device).reshape(-1)
    resolved = m.resolve_params(dict(params or {}))

    out: dict[str, torch.Tensor] = {}
    for prefix, (a_name, b_name) in pairs.items():
        As = [t[a_name] for t in parents_tensors]
        Bs = [t[b_name] for t in parents_tensors]
        r = _module_rank(prefix, As, Bs)
        products = [b.float() @ a.float() for a, b in zip(As, Bs)]
        merged = m(products, w, generator=generator, **resolved).float()
        if not bool(torch.isfinite(merged).all()):
            raise EvoMergeError(f"LoRA module {prefix}: merged product holds NaN or Inf values")
        B, A = factorize(merged, rank or r)
        out[a_name], out[b_name] = A.to(As[0].dtype), B.to(Bs[0].dtype)
    for name in others:
        out[name] = m([t[name] for t in parents_tensors], w, generator=generator, **resolved)
    return out
