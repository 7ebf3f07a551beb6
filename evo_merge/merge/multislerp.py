"""Means on the hypersphere of many tensors: mergekit's ``multislerp`` and ``karcher``.

``multislerp`` (base optional): the task vectors (or, without a base, the tensors) are
projected on the unit sphere, averaged in the tangent space at their weighted mean
direction, mapped back, and scaled by the weighted mean of their norms. ``karcher`` (no
base: all models are inputs): the Karcher (Riemannian) mean of the unit directions, with
equal weights as in mergekit, scaled by the mean norm.
"""

from __future__ import annotations

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.merge.registry import NonNegative, Positive, merge_method
from evo_merge.merge.sparsify import Tensors, check_shapes


@merge_method("multislerp", space="weights", base="optional")
def multislerp(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
               base: torch.Tensor | None = None, normalize_weights: bool = True,
               eps: Positive = 1e-8) -> torch.Tensor:
    """mergekit's multislerp: barycentric interpolation on the hypersphere (one input: itself)."""
    check_shapes("multislerp", tensors, base)
    if len(tensors) == 1:
        return tensors[0]
    stacked = torch.stack([x.float() for x in tensors])
    if base is not None:
        stacked.sub_(base.float())
    flat = stacked.view(len(tensors), -1)
    w = weights.float()
    if normalize_weights:
        w = w / w.sum()
    norms = torch.linalg.vector_norm(flat, dim=-1, keepdim=True)
    units = flat / (norms + eps)
    mean = (units * w.view(-1, 1)).sum(0)
    mean_norm = torch.linalg.vector_norm(mean)
    if mean_norm < eps:
        if len(tensors) != 2:
            raise EvoMergeError("merge method 'multislerp': the weighted mean direction is zero "
                                "(antipodal inputs with balancing weights); use other weights")
        out = flat[0] * w[0] + flat[1] * w[1]
    else:
        mean = mean / mean_norm
        tangents = units - (units * mean).sum(-1, keepdim=True) * mean
        tangent = (tangents * w.view(-1, 1)).sum(0)
        tn = torch.linalg.vector_norm(tangent) + eps
        out = (mean * torch.cos(tn) + tangent * (torch.sin(tn) / tn)) * (norms.squeeze(-1) * w).sum()
    out = out.view(tensors[0].shape)
    if base is not None:
        out = out + base.float()
    return out.to(tensors[0].dtype)


def karcher_mean(tensors: Tensors, max_iter: int, tol: float) -> torch.Tensor:
    """mergekit's equal-weight Karcher mean of the directions (norms <= tol left out), times the
    mean norm (all inputs); float32."""
    k = len(tensors)
    xs = [x.float().reshape(-1) for x in tensors]
    norms = [torch.linalg.vector_norm(x) for x in xs]
    units = [x / n for x, n in zip(xs, norms) if float(n) > tol]
    if not units:
        return torch.zeros_like(xs[0])
    alpha = 1.0 / len(units)
    mean = sum(u * alpha for u in units)
    mean_norm = float(torch.linalg.vector_norm(mean))
    mean = units[0].clone() if mean_norm < tol else mean / mean_norm
    for _ in range(max_iter):
        tangent = torch.zeros_like(mean)
        for u in units:
            dot = torch.clamp(torch.dot(mean, u), -1.0, 1.0)
            theta = torch.arccos(dot)
            if float(theta) < tol:
                continue
            tangent += alpha * (theta / torch.sin(theta)) * (u - dot * mean)
        tn = torch.linalg.vector_norm(tangent)
        if float(tn) < tol:
            break
        mean = torch.cos(tn) * mean + torch.sin(tn) * (tangent / tn)
        unit_norm = torch.linalg.vector_norm(mean)
        if float(unit_norm) > tol:
            mean = mean / unit_norm
    return mean * (sum(norms) / k)


@merge_method("karcher", space="weights")
def karcher(tensors: Tensors, weights: torch.Tensor, *, generator: torch.Generator | None,
            max_iter: int = 10, tol: NonNegative = 1e-5) -> torch.Tensor:
    """mergekit's karcher: the Karcher mean on the unit sphere of all inputs, equal weights (the
    per-model weights are ignored, as in mergekit), scaled by the mean of the inputs' norms."""
    check_shapes("karcher", tensors)
    if len(tensors) == 1:
        return tensors[0]
    return karcher_mean(tensors, max_iter, tol).view(tensors[0].shape).to(tensors[0].dtype)
