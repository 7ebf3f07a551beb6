"""Which scorer scores a task's (prompt, continuation) pairs: the cheapest that gives the same
log-probabilities."""

from __future__ import annotations

import torch

from evo_merge.fitness.cached_scoring import MIN_PREFIX, CachedChoiceScorer, common_prefix
from evo_merge.fitness.scoring import ContinuationScorer, Pair, SharedPromptScorer


def make_scorer(pairs: list[Pair], pad_id: int, device: torch.device, batch_size: int):
    """Each prompt once: from a cache where the prompts share a long prefix (few-shot examples)
    or continuations are longer than one token; with one forward per row where every
    continuation is one token; one sequence per pair where no prompt is shared."""
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
    if common_prefix(prompts) >= MIN_PREFIX or (len(prompts) < len(pairs) and any(len(c) > 1 for _, c in pairs)):
        return CachedChoiceScorer(prompts, groups, pad_id, device, batch_size)
    if all(len(c) == 1 for _, c in pairs):
        return SharedPromptScorer(prompts, [[(j, c[0]) for j, c in g] for g in groups], pad_id, device, batch_size)
    return ContinuationScorer(pairs, pad_id, device, batch_size)
