"""Which scorer scores a task's (prompt, continuation) pairs: the cheapest that gives the same
log-probabilities.

Prompts that share a prefix (the few-shot examples of one subject, a task description) are
found in token order: ``prefix_groups`` splits the prompts into the groups that save the most
positions, each group's shared prefix running once per evaluation. One task of few-shot
prompts is one group; an lm-eval group such as MMLU's subjects gives one group per subject.
"""

from __future__ import annotations

import numpy as np
import torch

from evo_merge.fitness.cached_scoring import MIN_PREFIX, CachedChoiceScorer, common_prefix, shared_length
from evo_merge.fitness.scoring import ContinuationScorer, Pair, SharedPromptScorer


def prefix_groups(prompts: list[list[int]]) -> list[list[int]]:
    """Prompt indices in groups, each sharing a prefix of at least ``MIN_PREFIX`` tokens (and
    leaving each prompt one token), chosen to save the most positions: a group of k prompts
    sharing s tokens saves (k - 1) * s. Prompts that share nothing worth a cache are left out."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    n = len(order)
    cap = [len(prompts[i]) - 1 for i in order]
    link = [0] + [shared_length(prompts[order[k - 1]], prompts[order[k]]) for k in range(1, n)]
    best, start = [0] * (n + 1), list(range(n + 1))
    for j in range(1, n + 1):
        best[j], start[j] = best[j - 1], j - 1
        shared = cap[j - 1]
        for i in range(j - 2, -1, -1):  # the group order[i:j]
            shared = min(shared, link[i + 1], cap[i])
            if shared < MIN_PREFIX:
                break
            if best[i] + (j - i - 1) * shared > best[j]:
                best[j], start[j] = best[i] + (j - i - 1) * shared, i
    groups, j = [], n
    while j > 0:
        if j - start[j] > 1:
            groups.append(sorted(order[start[j]:j]))
        j = start[j]
    return sorted(groups)


class ScorerSet:
    """Scorers of disjoint parts of the pairs, as one scorer: ``parts`` of (scorer, pair indices)."""

    def __init__(self, parts: list[tuple[object, list[int]]]):
        self.parts = parts
        self.n = sum(len(idx) for _, idx in parts)

    def logprobs(self, model: torch.nn.Module, greedy: bool = False):
        total, count = np.zeros(self.n), np.zeros(self.n)
        is_greedy = np.zeros(self.n, dtype=bool)
        for scorer, idx in self.parts:
            out = scorer.logprobs(model, greedy)
            total[idx], count[idx] = out[0], out[1]
            if greedy:
                is_greedy[idx] = out[2]
        return (total, count, is_greedy) if greedy else (total, count)


def make_scorer(pairs: list[Pair], pad_id: int, device: torch.device, batch_size: int, split: bool = True):
    """Each prompt once: from a cache where prompts share a long prefix (few-shot examples; per
    group of prompts where groups share different ones) or continuations are longer than one
    token; with one forward per row where every continuation is one token; one sequence per
    pair where no prompt is shared."""
    index: dict[tuple[int, ...], int] = {}
    prompts: list[list[int]] = []
    groups: list[list[tuple[int, list[int]]]] = []
    for i, (p, c) in enumerate(pairs):
        key = tuple(p)
        if key not in index:
            index[key] = len(prompts)
            prompts.append(list(p))
            groups.append([])
        groups[index[key]].append((i, list(c)))
    if not pairs or any(not c for _, c in pairs):
        return ContinuationScorer(pairs, pad_id, device, batch_size)
    shared = prefix_groups(prompts) if split else []
    if shared and not (len(shared) == 1 and len(shared[0]) == len(prompts)):
        grouped = {i for g in shared for i in g}
        parts = shared + ([rest] if (rest := [i for i in range(len(prompts)) if i not in grouped]) else [])
        owned = [[j for i in part for j, _ in groups[i]] for part in parts]
        return ScorerSet([(make_scorer([pairs[j] for j in idx], pad_id, device, batch_size, split=False), idx)
                          for idx in owned])
    if common_prefix(prompts) >= MIN_PREFIX or (len(prompts) < len(pairs) and any(len(c) > 1 for _, c in pairs)):
        return CachedChoiceScorer(prompts, groups, pad_id, device, batch_size)
    if all(len(c) == 1 for _, c in pairs):
        return SharedPromptScorer(prompts, [[(j, c[0]) for j, c in g] for g in groups], pad_id, device, batch_size)
    return ContinuationScorer(pairs, pad_id, device, batch_size)
