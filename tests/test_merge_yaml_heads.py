"""One-shot merges of models with and without a head of their own (tied embeddings), as
mergekit plans them: the head is optional, and a tied model's embedding stands in for it."""

from __future__ import annotations

import json

import pytest
import torch

from test_merge_yaml import run, weights


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """Two 2-layer Llamas: one with a head of its own, one with its head tied to its embedding
    (no ``lm_head.weight`` in its file)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.factories import make_tokenizer

    root = tmp_path_factory.mktemp("heads")
    for name, tie in (("untied", False), ("tied", True), ("tied2", True)):
        torch.manual_seed(len(name) + tie)
        LlamaForCausalLM(LlamaConfig(vocab_size=28, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
                         ).save_pretrained(root / name, safe_serialization=True)
        make_tokenizer().save_pretrained(root / name)
    return root


@pytest.mark.parametrize("order", [("tied", "untied"), ("untied", "tied")])
def test_a_tied_model_stands_in_with_its_embedding_for_the_head_as_in_mergekit(cli, heads, tmp_path, order):
    """mergekit 0.1.5 gives the same tensors (its architecture files: lm_head optional, tied to
    embed_tokens); its config.json keeps tie_word_embeddings true, so transformers would drop
    the merged head: ours says false."""
    from transformers import AutoModelForCausalLM

    weight = {"tied": 0.3, "untied": 0.7}
    cfg = {"merge_method": "linear", "models": [{"model": str(heads / m), "parameters": {"weight": weight[m]}}
                                                for m in order]}
    code, err = run(cli, tmp_path, cfg)
    assert code == 0, err
    t, u, got = weights(heads / "tied"), weights(heads / "untied"), weights(tmp_path / "out")
    assert "lm_head.weight" not in t
    emb = "model.embed_tokens.weight"
    torch.testing.assert_close(got["lm_head.weight"], 0.3 * t[emb] + 0.7 * u["lm_head.weight"], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[emb], 0.3 * t[emb] + 0.7 * u[emb], rtol=0, atol=1e-6)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["tie_word_embeddings"] is False
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    torch.testing.assert_close(model.lm_head.weight.data, got["lm_head.weight"], rtol=0, atol=0)


def test_tied_models_give_a_tied_output_without_a_head(cli, heads, tmp_path):
    cfg = {"merge_method": "linear", "models": [{"model": str(heads / m), "parameters": {"weight": 1.0}}
                                                for m in ("tied", "tied2")]}
    code, err = run(cli, tmp_path, cfg)
    assert code == 0, err
    assert "lm_head.weight" not in weights(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["tie_word_embeddings"] is True
