"""Exact LoRA merging: every individual of a LoRA population in one basis of the members.

Any weighted sum of LoRA updates is itself a LoRA update of the summed rank::

    sum_i c_i B_i A_i = [c_1 B_1 ... c_k B_k] [A_1; ...; A_k]

so the population shares one stacked A per module (``A_cat``, the members' A factors, rank
R = the sum of the members' ranks) and an individual is its stacked B (out x R): member i
is B_i (times its LoRA scaling) in block i and zeros elsewhere. A linear merge of
individuals (linear, task arithmetic, per-group compositions, swarm steps) is then the
same linear merge of their B factors: exact, elementwise and deterministic. Methods that
are not linear in the weights (TIES, DARE, breadcrumbs, SLERP, model stock) work on what
they are defined on, the updates B A_cat, and their result is projected back onto the
basis (least squares, exact whenever the result lies in its row space).

The host model carries a LoRA of rank R whose A is ``A_cat`` and whose scaling is 1.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import torch

from evo_merge.errors import EvoMergeError

LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"


@contextmanager
def one_thread() -> Iterator[None]:
    """LAPACK results depend on the thread count on CPU: run linear algebra on one thread, so
    every worker and every replay gets the same bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def adapter_scale(config: Mapping) -> float:
    """PEFT's scaling of an adapter: lora_alpha / r (or / sqrt(r) with rsLoRA)."""
    r, alpha = config.get("r", 8), config.get("lora_alpha", 8)
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


@dataclass(eq=False)
class LoraBasis:
    """The members' A factors stacked per module, and where each member's block lies."""

    a: dict[str, torch.Tensor]                    # module prefix -> A_cat (R x in), float32
    blocks: list[tuple[str, int, int, float]]     # member, first row, rank, scaling
    max_rank: int | None = None                   # merges truncated to this rank (None: R, exact)
    digest: str = ""
    _pinv: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _chol: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def rank(self) -> int:
        return sum(r for _, _, r, _ in self.blocks)

    @classmethod
    def from_members(cls, members: Mapping[str, tuple[Mapping[str, torch.Tensor], float]],
                     max_rank: int | None = None) -> "LoraBasis":
        """``members``: name -> (adapter tensors with PEFT names, scaling). Every member must
        adapt the same modules; ranks and scalings may differ. ``max_rank`` below the summed
        rank truncates every merge result to that rank (truncated SVD in the basis)."""
        prefixes = None
        blocks, offset = [], 0
        a_parts: dict[str, list[torch.Tensor]] = {}
        for name, (tensors, scale) in members.items():
            mods = {n[: -len(LORA_A)]: t for n, t in tensors.items() if n.endswith(LORA_A)}
            if prefixes is None:
                prefixes = sorted(mods)
            elif sorted(mods) != prefixes:
                diff = sorted(set(mods) ^ set(prefixes))[:2]
                raise EvoMergeError(f"member {name}: adapts other modules than the first member ({diff})")
            ranks = {t.shape[0] for t in mods.values()}
            if len(ranks) != 1:
                raise EvoMergeError(f"member {name}: modules of different ranks {sorted(ranks)} (rank_pattern) "
                                    "are not supported")
            rank = ranks.pop()
            blocks.append((name, offset, rank, float(scale)))
            offset += rank
            for p in prefixes:
                a_parts.setdefault(p, []).append(mods[p].float())
        if max_rank is not None and max_rank >= offset:
            max_rank = None  # every weighted sum of members fits: nothing to truncate
        basis = cls({p: torch.cat(parts).contiguous() for p, parts in a_parts.items()}, blocks, max_rank)
        basis.digest = basis._hash()
        return basis

    def _hash(self) -> str:
        h = hashlib.sha256(f"{self.blocks!r};{self.max_rank}".encode())
        for p in sorted(self.a):
            h.update(f"{p}:{tuple(self.a[p].shape)};".encode())
            h.update(memoryview(self.a[p].contiguous().view(torch.uint8).numpy()))
        return h.hexdigest()

    def member_tensors(self, name: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A member's genome tensors: its scaled B in its block of the stacked B, zeros elsewhere;
        tensors outside LoRA pairs as they are."""
        _, first, rank, scale = next(b for b in self.blocks if b[0] == name)
        out: dict[str, torch.Tensor] = {}
        for n, t in tensors.items():
            if n.endswith(LORA_A):
                continue
            if n.endswith(LORA_B):
                stacked = torch.zeros(t.shape[0], self.rank, dtype=torch.float32)
                stacked[:, first:first + rank] = t.float() * scale
                out[n] = stacked.to(t.dtype)
            else:
                out[n] = t
        return out

    def prefix(self, b_name: str) -> str | None:
        return b_name[: -len(LORA_B)] if b_name.endswith(LORA_B) else None

    def update(self, b_name: str, b: torch.Tensor) -> torch.Tensor:
        """The module's weight update B A_cat (out x in), float32."""
        return b.float() @ self.a[self.prefix(b_name)].to(b.device)

    def project(self, b_name: str, update: torch.Tensor) -> torch.Tensor:
        """The stacked B whose update is closest to ``update`` (exact when it lies in the row
        space of A_cat): update A_cat^T (A_cat A_cat^T)^-1."""
        p = self.prefix(b_name)
        if p not in self._pinv:
            a = self.a[p].double()
            with one_thread():
                self._pinv[p] = (a.T @ torch.linalg.pinv(a @ a.T, hermitian=True)).float()
        return update.float() @ self._pinv[p].to(update.device)

    def whitening(self, b_name: str) -> torch.Tensor:
        """L with A_cat A_cat^T = L L^T (L^-1 A_cat has orthonormal rows): B A_cat = (B L)(L^-1 A_cat)."""
        p = self.prefix(b_name)
        if p not in self._chol:
            a = self.a[p].double()
            gram = a @ a.T
            jitter = 1e-10 * float(gram.diagonal().mean())
            with one_thread():
                self._chol[p] = torch.linalg.cholesky(gram + jitter * torch.eye(len(gram), dtype=gram.dtype))
        return self._chol[p]

    def svd(self, b_name: str, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """U, S, Vh, L with B A_cat = U diag(S) Vh (L^-1 A_cat), singular values descending."""
        chol = self.whitening(b_name)
        with one_thread():
            u, s, vh = torch.linalg.svd(b.double() @ chol.to(b.device), full_matrices=False)
        return u, s, vh, chol

    def from_svd(self, u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
        """The stacked B whose update is U diag(S) Vh (L^-1 A_cat)."""
        m = (u * s) @ vh
        with one_thread():
            return torch.linalg.solve_triangular(chol.T.to(m.device), m.T, upper=True).T.float()

    def truncate(self, b_name: str, b: torch.Tensor) -> torch.Tensor:
        """The best rank-``max_rank`` update in the basis (Eckart-Young), as a stacked B."""
        if self.max_rank is None:
            return b
        u, s, vh, chol = self.svd(b_name, b)
        k = self.max_rank
        return self.from_svd(u[:, :k], s[:k], vh[:k], chol).to(b.dtype)

    def peft_tensors(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A PEFT adapter of rank R (scaling 1: lora_alpha = r = R) from a genome's tensors."""
        out = {}
        for n, t in tensors.items():
            p = self.prefix(n)
            if p is not None:
                out[p + LORA_A] = self.a[p].to(t.dtype).contiguous()
            out[n] = t.detach().clone().contiguous()
        return out
