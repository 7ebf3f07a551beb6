"""Spherical interpolation of two tensors: mergekit's ``slerp`` and ``nuslerp``, and
evo-merge's ``task_slerp``.

``slerp`` (model weights, base required): from the base (t=0) to the one other model (t=1),
as mergekit's config with ``base_model`` one of the two models. Called without a base
(evolution) on two tensors it interpolates tensors[0] -> tensors[1]; on one tensor the base
is the origin. ``task_slerp`` is the same interpolation between two task vectors (the old
evo-merge slerp). The angle is taken from copies normalized to unit norm (norms <= eps are
left as they are); pairs with |cos| > 0.9995 use lerp. ``nuslerp`` (base optional):
interpolates the two models' task vectors when a base is given, the models otherwise, at
t = w1 / (w0 + w1), over the flattened tensor, its rows or its columns.
"""

from __future__ import annotations

import math

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.merge.registry import Positive, merge_method
from evo_merge.merge.sparsify import Tensors, check_shapes

_DOT_THRESHOLD = 0.9995  # |cos| above this: SLERP falls back to lerp (mergekit's value)


def slerp_pair(t: float, v0: torch.Tensor | None, v1: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """mergekit's slerp of whole tensors, in float32; ``v0`` None is the origin (no zeros allocated)."""
    b = v1.float()
    if v0 is None:  # the origin: norm 0 (left as is), cos 0, theta pi/2
        return (b * math.sin(t * math.pi / 2)).to(v1.dtype)
    nb = torch.linalg.vector_norm(b, dtype=torch.float64)
    nb = torch.where(nb > eps, nb, 1.0)
    a = v0.float()
    na = torch.linalg.vector_norm(a, dtype=torch.float64)
    na = torch.where(na > eps, na, 1.0)
    cos = max(-1.0, min(1.0, float((a * b).sum(dtype=torch.float64) / (na * nb))))
    if abs(cos) > _DOT_THRESHOLD:
        s0, s1 = 1.0 - t, t
    else:
        theta = math.acos(cos)
        s0, s1 = math.sin((1.0 - t) * theta) / math.sin(theta), math.sin(t * theta) / math.sin(theta)
    return (a * s0 + b * s1).to(v0.dtype)


@merge_method("slerp", min_parents=1, max_parents=2, space="weights", base="required")
def slerp(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
          base: torch.Tensor | None = None, t: float = 0.5) -> torch.Tensor:
    """mergekit's slerp: from the base (t=0) to the other model (t=1); without a base, from
    tensors[0] to tensors[1]. Weights are ignored: for fitness-proportional interpolation pass
    t = w1 / (w0 + w1)."""
    check_shapes("slerp", tensors, base)
    if base is not None and len(tensors) != 1:
        raise EvoMergeError(f"merge method 'slerp' with a base needs exactly 1 other model, got {len(tensors)}")
    if base is not None:
        return slerp_pair(t, base, tensors[0]).to(tensors[0].dtype)
    return slerp_pair(t, tensors[0] if len(tensors) == 2 else None, tensors[-1])


@merge_method("task_slerp", min_parents=2, max_parents=2)
def task_slerp(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
               t: float = 0.5, epsilon: Positive = 1e-8) -> torch.Tensor:
    """Spherical interpolation from task vector 0 (t=0) to task vector 1 (t=1), angle from the
    normalized copies (norms <= ``epsilon`` not normalized); |cos| > 0.9995: lerp. Weights are
    ignored. In evolution this is what ``slerp`` computes."""
    check_shapes("task_slerp", tensors)
    return slerp_pair(t, tensors[0], tensors[1], eps=epsilon)


def nuslerp_pair(t: float, v0: torch.Tensor, v1: torch.Tensor, row_wise: bool, flatten: bool,
                 eps: float = 1e-8) -> torch.Tensor:
    """mergekit's nuslerp kernel (float32): slerp along the last dimension of the flattened
    tensors, of the tensors (each row), or of their transposes (row_wise: each column)."""
    shape = v0.shape
    a, b = v0.float(), v1.float()
    if flatten:
        a, b = a.reshape(-1), b.reshape(-1)
    elif row_wise:
        a, b = a.transpose(0, -1), b.transpose(0, -1)
    ua = a / torch.linalg.vector_norm(a, dim=-1, keepdim=True).clamp(min=1e-7)
    ub = b / torch.linalg.vector_norm(b, dim=-1, keepdim=True).clamp(min=1e-7)
    cos = (ua * ub).sum(dim=-1, keepdim=True).clamp(-1, 1)
    colinear = (1 - cos.square()) <= eps ** 2
    theta = torch.acos(torch.where(colinear, 0.0, cos))
    out = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)
    out = torch.where(colinear, (1 - t) * a + t * b, out)
    if row_wise and not flatten:
        out = out.transpose(0, -1)
    return out.reshape(shape)


@merge_method("nuslerp", min_parents=2, max_parents=2, space="weights", base="optional")
def nuslerp(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
            base: torch.Tensor | None = None, nuslerp_row_wise: bool = False,
            nuslerp_flatten: bool = True) -> torch.Tensor:
    """mergekit's nuslerp: t = w1 / (w0 + w1) (0.5 when the sum is within 1e-6 of zero); with a
    base, base + slerp of the two task vectors, else slerp of the two tensors."""
    check_shapes("nuslerp", tensors, base)
    w0, w1 = (float(w) for w in weights)
    t = 0.5 if abs(w0 + w1) < 1e-6 else w1 / (w0 + w1)
    if base is None:
        return nuslerp_pair(t, tensors[0], tensors[1], nuslerp_row_wise, nuslerp_flatten).to(tensors[0].dtype)
    b = base.float()
    out = nuslerp_pair(t, tensors[0].float() - b, tensors[1].float() - b, nuslerp_row_wise, nuslerp_flatten)
    return out.add_(b).to(tensors[0].dtype)
