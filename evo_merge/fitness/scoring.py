"""Log-probabilities of continuations given prompts, batched with left padding.

Two scorers with one interface (``batches``, each with the model inputs and ``keep``, the
positions that go through the LM head, and ``extract``, which turns a batch's logits into
summed log-probabilities and token counts per (prompt, continuation) pair):

- ``ContinuationScorer``: every pair is one sequence, prompt + continuation; only the last
  K + 1 positions go through the LM head, K the longest continuation of the batch.
- ``SharedPromptScorer``: when every continuation is one token (multiple choice over
  letters, digits, short words), each prompt is run once and one position gives the
  log-probability of all its continuations: one forward per row instead of one per
  choice, with the same numbers.

On a CPU a padded position costs as much arithmetic as a real one, so there the rows of a
model with decoder layers of at least ``BY_LENGTH_MIN_LAYER_PARAMS`` parameters are batched
by length (``length_batches``): a batch of rows of one length needs no padding and no
attention mask. On a GPU, and for smaller models, where the number of forwards costs more
than a few padded positions, batches are the ``batch_size`` shortest rows left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from evo_merge.fitness.last_layer import layer_params, scored_positions_only

Pair = tuple[list[int], list[int]]


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None         # None: every row of the batch has the same length
    position_ids: torch.Tensor | None
    keep: int                                   # logits_to_keep
    pairs: list[list[int]]                      # per batch row: the pair indices it scores
    targets: torch.Tensor                       # continuation token ids: (B, K) or (B, choices)
    mask: torch.Tensor                          # which targets count
    extra: dict = field(default_factory=dict)


MIN_EXACT_ROWS = 8  # a batch of one length is closed at a new length once it holds this many rows
BY_LENGTH_MIN_LAYER_PARAMS = 1_000_000  # smaller models: one forward costs more than padding saves


def length_batches(lengths: list[int], batch_size: int, exact: bool) -> list[list[int]]:
    """Row indices, shortest first, in batches of at most ``batch_size``. With ``exact`` a
    batch is closed where the length changes once it holds ``MIN_EXACT_ROWS`` rows, so most
    batches hold rows of one length (the few rows of rare lengths are padded together)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    if not exact:
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    batches: list[list[int]] = [[]]
    for i in order:
        cur = batches[-1]
        if cur and (len(cur) == batch_size or (lengths[i] != lengths[cur[-1]] and len(cur) >= MIN_EXACT_ROWS)):
            batches.append(cur := [])
        cur.append(i)
    return [b for b in batches if b]


def unpadded(mask: torch.Tensor, pos: torch.Tensor):
    """The mask and positions a batch needs: none where no row is padded."""
    return (None, None) if bool(mask.all()) else (mask, pos)


def left_pad_ids(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, seq in enumerate(seqs):
        ids[r, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[r, width - len(seq):] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def by_length(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether rows are batched by length for this model (on a CPU, layers not tiny)."""
    return device.type == "cpu" and layer_params(model) >= BY_LENGTH_MIN_LAYER_PARAMS


class _Scorer:
    n: int
    device: torch.device
    batchings: dict[bool, list[Batch]]  # by length (on a CPU only) and not

    def batches(self, model: torch.nn.Module) -> list[Batch]:
        return self.batchings[by_length(model, self.device)]

    def extract(self, batch: Batch, logits: torch.Tensor, total: np.ndarray, count: np.ndarray,
                greedy: np.ndarray | None = None) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def logprobs(self, model: torch.nn.Module, greedy: bool = False):
        """Per pair: summed log-probability and number of continuation tokens (and, with
        ``greedy``, whether greedy decoding would produce the continuation)."""
        total, count = np.zeros(self.n), np.zeros(self.n)
        is_greedy = np.zeros(self.n, dtype=bool) if greedy else None
        for b in self.batches(model):
            with scored_positions_only(model, b.keep):
                logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                               logits_to_keep=b.keep, use_cache=False).logits
            self.extract(b, logits, total, count, is_greedy)
        return (total, count, is_greedy) if greedy else (total, count)


class ContinuationScorer(_Scorer):
    def __init__(self, pairs: list[Pair], pad_id: int, device: torch.device, batch_size: int):
        self.n, self.device = len(pairs), device
        lengths = [len(p) + len(c) for p, c in pairs]
        self.batchings = {exact: [self._batch(pairs, rows, pad_id, device)
                                  for rows in length_batches(lengths, batch_size, exact)]
                          for exact in ((False, True) if device.type == "cpu" else (False,))}

    @staticmethod
    def _batch(pairs: list[Pair], rows: list[int], pad_id: int, device: torch.device) -> Batch:
        chosen = [pairs[i] for i in rows]
        ids, mask, pos = left_pad_ids([p + c for p, c in chosen], pad_id)
        k = max(len(c) for _, c in chosen)
        cont = torch.zeros((len(chosen), k), dtype=torch.bool)
        for r, (_, c) in enumerate(chosen):
            cont[r, k - len(c):] = True
        mask, pos = unpadded(mask.to(device), pos.to(device))
        return Batch(ids.to(device), mask, pos, k + 1, [[i] for i in rows], ids[:, -k:].to(device), cont.to(device))

    def extract(self, batch: Batch, logits: torch.Tensor, total: np.ndarray, count: np.ndarray,
                greedy: np.ndarray | None = None) -> None:
        k = batch.targets.shape[1]
        logits = logits[:, -k - 1:-1].float()
        lp = logits.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
        rows = [p[0] for p in batch.pairs]
        total[rows] = (lp * batch.mask).sum(-1).cpu().numpy()
        count[rows] = batch.mask.sum(-1).cpu().numpy()
        if greedy is not None:
            greedy[rows] = ((logits.argmax(-1) == batch.targets) | ~batch.mask).all(-1).cpu().numpy()


class SharedPromptScorer(_Scorer):
    """``groups``: per prompt, its (pair index, one-token continuation) list."""

    def __init__(self, prompts: list[list[int]], groups: list[list[tuple[int, int]]], pad_id: int,
                 device: torch.device, batch_size: int):
        self.n, self.device = sum(len(g) for g in groups), device
        lengths = [len(p) for p in prompts]
        self.batchings = {exact: [self._batch(prompts, groups, rows, pad_id, device)
                                  for rows in length_batches(lengths, batch_size, exact)]
                          for exact in ((False, True) if device.type == "cpu" else (False,))}

    @staticmethod
    def _batch(prompts: list[list[int]], groups: list[list[tuple[int, int]]], rows: list[int], pad_id: int,
               device: torch.device) -> Batch:
        ids, mask, pos = left_pad_ids([prompts[i] for i in rows], pad_id)
        mask, pos = unpadded(mask.to(device), pos.to(device))
        width = max(len(groups[i]) for i in rows)
        targets = torch.zeros((len(rows), width), dtype=torch.long)
        valid = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, i in enumerate(rows):
            for j, (_, token) in enumerate(groups[i]):
                targets[r, j], valid[r, j] = token, True
        return Batch(ids.to(device), mask, pos, 1, [[p for p, _ in groups[i]] for i in rows], targets.to(device),
                     valid.to(device))

    def extract(self, batch: Batch, logits: torch.Tensor, total: np.ndarray, count: np.ndarray,
                greedy: np.ndarray | None = None) -> None:
        last = logits[:, -1].float().log_softmax(-1)
        lp = last.gather(-1, batch.targets).cpu().numpy()
        best = last.argmax(-1).cpu().numpy()
        targets = batch.targets.cpu().numpy()
        for r, pairs in enumerate(batch.pairs):
            total[pairs] = lp[r, :len(pairs)]
            count[pairs] = 1
            if greedy is not None:
                greedy[pairs] = targets[r, :len(pairs)] == best[r]
