"""Batched multi-LoRA scoring: several LoRA individuals in one forward over the shared base.

The host's PEFT model gets ``slots`` extra adapters. Each individual is copied into one
slot, and every batch row names its slot through PEFT's mixed-batch inference
(``adapter_names=``). The base layers then run once over the rows of all individuals,
and only the small LoRA products run per individual. Only continuation-scored metrics
(``mc_loglik``, ``neg_loss``) are batched this way; others fall back to one pass each.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.model_host import ModelHost


class MultiLoraSlots:
    """``slots`` extra PEFT adapters on the host's model, each loadable with a genome."""

    def __init__(self, host: ModelHost, slots: int):
        if host.layout.kind not in ("lora", "lora_exact"):
            raise EvoMergeError("batched multi-LoRA scoring needs a LoRA population")
        model = host.model
        config = model.peft_config["default"]
        self.host, self.names = host, [f"slot{k}" for k in range(slots)]
        self.params: list[dict[str, torch.nn.Parameter]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in self.names:
                model.add_adapter(name, config)
        model.set_adapter("default")  # add_adapter may switch the active adapter
        for name in self.names:
            marker = f".{name}."
            slot = {n.replace(marker, "."): p for n, p in model.named_parameters() if marker in n}
            missing = [n for n in host.layout.names if n not in slot]
            if missing:
                raise EvoMergeError(f"adapter slot {name}: no parameter for genome tensor {missing[0]}")
            self.params.append(slot)
            if host.basis is not None:  # exact LoRA: every slot computes over the members' stacked A
                with torch.no_grad():
                    for n, p in slot.items():
                        if n.endswith(".lora_A.weight"):
                            p.copy_(host.basis.a[n[: -len(".lora_A.weight")]])
        model.requires_grad_(False)
        model.eval()

    @torch.no_grad()
    def load(self, k: int, genome: Genome) -> None:
        for name, tensor in genome.tensors().items():
            self.params[k][name].copy_(tensor)

    @torch.no_grad()
    def logprobs(self, scorer, count: int, max_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For slots 0..count-1: summed log-probabilities and token counts, as ``scorer.logprobs``."""
        model = self.host.model
        totals = np.zeros((count, scorer.n))
        counts = np.zeros((count, scorer.n))
        for b in scorer.batches(model):
            rows = b.input_ids.shape[0]
            per_call = max(1, max_rows // rows)
            for start in range(0, count, per_call):
                ks = list(range(start, min(count, start + per_call)))
                reps = len(ks)
                names = [self.names[k] for k in ks for _ in range(rows)]
                mask, pos = (None, None) if b.attention_mask is None else (b.attention_mask.repeat(reps, 1),
                                                                           b.position_ids.repeat(reps, 1))
                logits = model(input_ids=b.input_ids.repeat(reps, 1), attention_mask=mask, position_ids=pos,
                               logits_to_keep=b.keep, use_cache=False, adapter_names=names).logits
                for j, k in enumerate(ks):
                    scorer.extract(b, logits[j * rows:(j + 1) * rows], totals[k], counts[k])
        return [(totals[k], counts[k]) for k in range(count)]


def batchable(metric) -> bool:
    """Metrics whose predictions come from continuation log-probabilities."""
    return hasattr(metric, "from_logprobs") and hasattr(getattr(metric, "scorer", None), "extract")


def predict_many(slots: MultiLoraSlots, metric, genomes: Sequence[Genome], max_rows: int) -> list[list]:
    """Predictions of ``metric`` for each genome, batched over slots."""
    out: list[list] = []
    for start in range(0, len(genomes), len(slots.names)):
        chunk = genomes[start:start + len(slots.names)]
        for k, g in enumerate(chunk):
            slots.load(k, g)
        out.extend(metric.from_logprobs(*lp) for lp in slots.logprobs(metric.scorer, len(chunk), max_rows))
    return out
