"""The last decoder layer's MLP and attention output projection run only at the scored
positions: those positions' logits and the key/value cache equal a plain forward's, on every
architecture the project supports, with and without a PEFT wrapper."""

from __future__ import annotations

import pytest
import torch

import factories
from evo_merge.fitness.last_layer import scored_positions_only


def _inputs():
    torch.manual_seed(1)
    ids = torch.randint(3, len(factories.VOCAB), (3, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@pytest.mark.parametrize("peft", [False, True])
@pytest.mark.parametrize("arch", factories.ARCHS)
def test_scored_positions_get_the_plain_forward_values(arch, peft):
    model = factories.make_arch_model(arch).eval()
    if peft:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["o_proj", "down_proj", "q_proj"],
                                                 init_lora_weights=False))
    ids, mask, pos = _inputs()
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        with scored_positions_only(model, 2):  # the last two positions of every row
            last = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=2)
        rows = torch.tensor([4, 8, 6])  # one position per row
        with scored_positions_only(model, rows):
            one = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=rows.unique())
    torch.testing.assert_close(last.logits, plain.logits[:, -2:], atol=1e-5, rtol=1e-5)
    at = torch.searchsorted(rows.unique(), rows)
    torch.testing.assert_close(one.logits[torch.arange(3), at], plain.logits[torch.arange(3), rows],
                               atol=1e-5, rtol=1e-5)
    cache = getattr(plain, "past_key_values", None) or plain.cache
    cache_fast = getattr(last, "past_key_values", None) or last.cache
    torch.testing.assert_close(cache_fast.layers[-1].keys, cache.layers[-1].keys)
    torch.testing.assert_close(cache_fast.layers[-1].values, cache.layers[-1].values)
    # the model is whole again afterwards, and the trick really skips work: other positions differ
    base = model.get_base_model() if peft else model
    assert type(base.model.layers[-1].mlp).__name__ != "_AtPositions"
    with torch.no_grad(), scored_positions_only(model, 1):
        skipped = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    assert not torch.allclose(skipped[:, 0], plain.logits[:, 0], atol=1e-3)
