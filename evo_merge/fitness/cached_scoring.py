"""Scoring continuations from cached prompts: each prompt runs once, every continuation of it
continues from the prompt's key/value cache; a prefix that every prompt of a task shares
(few-shot examples) runs once per evaluation.

For a batch of rows: the shared prefix's cache is repeated for the rows, the rest of each
prompt (right-padded) runs on top of it, the cache is repeated once more per continuation,
and the continuations (right-padded) run on top of that. Position ids and the attention
mask skip the padding, so every token sees exactly what it would see unpadded. The first
token of a continuation is scored from the prompt's last position, the others from the
continuation pass. The same numbers as one sequence per (prompt, continuation) pair.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import torch

from evo_merge.fitness.last_layer import scored_positions_only
from evo_merge.fitness.scoring import ContinuationScorer

MIN_PREFIX = 8  # a shared prefix shorter than this is not worth a cache of its own


def shared_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens two prompts share."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest token prefix all prompts share, leaving every prompt one token."""
    if len(prompts) < 2:
        return 0
    return max(0, min(min(len(p) for p in prompts) - 1, min(shared_length(prompts[0], p) for p in prompts[1:])))


def _right_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def _cache_io(model) -> tuple[str, str]:
    """The forward's cache argument and output names (``cache`` since transformers 5.x), read
    from the transformers model under a PEFT wrapper (whose forward shows only ``**kwargs``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = inspect.signature(base.forward).parameters
    return ("cache", "cache") if "cache" in names else ("past_key_values", "past_key_values")


class CachedChoiceScorer:
    """``groups``: per prompt, its (pair index, continuation tokens) list. Models with sliding-window
    attention take the uncached path where a sequence is longer than the window (their cache
    keeps only the window)."""

    def __init__(self, prompts: list[list[int]], groups: list[list[tuple[int, list[int]]]], pad_id: int,
                 device: torch.device, batch_size: int):
        self.n = sum(len(g) for g in groups)
        self.pad, self.device, self.batch_size = pad_id, device, batch_size
        cut = common_prefix(prompts)
        self.prefix = prompts[0][:cut] if cut >= MIN_PREFIX else []
        self.rest = [p[len(self.prefix):] for p in prompts]
        self.groups = groups
        order = sorted(range(len(prompts)), key=lambda i: (len(self.rest[i]), len(groups[i])))
        self.order = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]

    @torch.no_grad()
    def logprobs(self, model: torch.nn.Module, greedy: bool = False):
        window = getattr(model.config, "sliding_window", None)
        longest = len(self.prefix) + max(len(r) + max(len(c) for _, c in g) for r, g in zip(self.rest, self.groups))
        if window and longest > window:
            pairs = sorted((j, self.prefix + r, c) for r, g in zip(self.rest, self.groups) for j, c in g)
            return ContinuationScorer([(p, c) for _, p, c in pairs], self.pad, self.device,
                                      self.batch_size).logprobs(model, greedy)
        total, count = np.zeros(self.n), np.zeros(self.n)
        is_greedy = np.zeros(self.n, dtype=bool) if greedy else None
        arg, field = _cache_io(model)
        prefix_cache = None
        if self.prefix:
            ids = torch.tensor([self.prefix], device=self.device)
            prefix_cache = getattr(model(input_ids=ids, use_cache=True), field)
        for rows in self.order:
            self._batch(model, rows, prefix_cache, total, count, is_greedy, arg, field)
        return (total, count, is_greedy) if greedy else (total, count)

    def _batch(self, model, rows: list[int], prefix_cache, total, count, is_greedy, arg: str, field: str) -> None:
        p = len(self.prefix)
        rest, rest_mask = _right_pad([self.rest[i] for i in rows], self.pad)
        lengths = rest_mask.sum(-1)
        rest, rest_mask, lengths = rest.to(self.device), rest_mask.to(self.device), lengths.to(self.device)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
        mask = torch.cat([torch.ones(len(rows), p, dtype=torch.long, device=self.device), rest_mask], 1)
        pos = p + torch.arange(rest.shape[1], device=self.device).expand(len(rows), -1)
        conts = [c for i in rows for _, c in self.groups[i]]
        longer = any(len(c) > 1 for c in conts)  # one-token choices need no continuation pass
        keep = torch.unique(lengths - 1)  # only the rows' last positions go through the LM head
        with scored_positions_only(model, lengths - 1):
            out = model(input_ids=rest, attention_mask=mask, position_ids=pos, use_cache=longer, logits_to_keep=keep,
                        **{arg: cache})
        at = torch.searchsorted(keep, lengths - 1)
        last = out.logits[torch.arange(len(rows)), at].float().log_softmax(-1)  # predicts token 0
        per_row = [len(self.groups[i]) for i in rows]
        pairs = [j for i in rows for j, _ in self.groups[i]]
        index = torch.repeat_interleave(torch.arange(len(rows), device=self.device),
                                        torch.tensor(per_row, device=self.device))
        if not longer:
            cont = torch.tensor([c[0] for c in conts], device=self.device)
            total[pairs] = last[index].gather(-1, cont[:, None]).squeeze(-1).cpu().numpy()
            count[pairs] = 1
            if is_greedy is not None:
                is_greedy[pairs] = (last[index].argmax(-1) == cont).cpu().numpy()
            return
        cont, cont_mask = _right_pad(conts, self.pad)
        cont, cont_mask = cont.to(self.device), cont_mask.to(self.device)
        cache = getattr(out, field)
        cache.batch_select_indices(index)
        mask = torch.cat([torch.ones(len(conts), p, dtype=torch.long, device=self.device), rest_mask[index],
                          cont_mask], 1)
        pos = (p + lengths[index])[:, None] + torch.arange(cont.shape[1], device=self.device)
        logits = model(input_ids=cont, attention_mask=mask, position_ids=pos, use_cache=False,
                       **{arg: cache}).logits.float().log_softmax(-1)
        first = last[index].gather(-1, cont[:, :1]).squeeze(-1)
        later = logits[:, :-1].gather(-1, cont[:, 1:].unsqueeze(-1)).squeeze(-1) * cont_mask[:, 1:]
        sums = (first + later.sum(-1)).cpu().numpy()
        total[pairs] = sums
        count[pairs] = cont_mask.sum(-1).cpu().numpy()
        if is_greedy is not None:
            ok_first = last[index].argmax(-1) == cont[:, 0]
            ok_later = ((logits[:, :-1].argmax(-1) == cont[:, 1:]) | (cont_mask[:, 1:] == 0)).all(-1)
            is_greedy[pairs] = (ok_first & ok_later).cpu().numpy()
