"""Parents and configs for ``mergekit_parity.py``: seeded random Llamas and one mergekit YAML per row.

A size's base is a random-init ``LlamaForCausalLM`` (seed 0); fine-tune ``ft<i>`` is the base plus
seeded gaussian noise of 1e-2 times each tensor's std (its mean magnitude for constant tensors such
as norm weights) and, on 0.1 % of the values, outliers 30 times larger, so that magnitude-based
methods (TIES, breadcrumbs, DELLA) have something to select. Every parent is float32, saved with
``save_pretrained(safe_serialization=True)``, with a small word-level ``PreTrainedTokenizerFast``.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

SIZES = {  # name: (hidden, layers, heads, intermediate, vocab)
    "tiny": (64, 4, 4, 128, 256),
    # 2048, as benchmarks/lm_eval_speed.py: that makes the 134 M parameters (3072 would make 162 M)
    "134m": (768, 12, 12, 2048, 32000),
}
FINE_TUNES = 3
_TEXT = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
         "you were her she there been one all we their has would when if so what no about into more some could them "
         "other than then now only its time these may like very also over new people any after most made")
WORDS = _TEXT.split()


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *dict.fromkeys(WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


def _perturb(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in state.items():
        std = t.float().std().item() if t.numel() > 1 else 0.0
        scale = std if std > 1e-8 else max(t.float().abs().mean().item(), 1e-3)
        noise = torch.randn(t.shape, generator=gen) * (1e-2 * scale)
        outliers = torch.rand(t.shape, generator=gen) < 1e-3
        noise = torch.where(outliers, torch.randn(t.shape, generator=gen) * (0.3 * scale), noise)
        out[name] = t + noise.to(t.dtype)
    return out


def build_parents(root: Path, size: str) -> dict[str, Path]:
    """``{"base": dir, "ft1": dir, ...}`` under ``root/size``; a complete directory is reused."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = root / size
    paths = {"base": folder / "base", **{f"ft{i}": folder / f"ft{i}" for i in range(1, FINE_TUNES + 1)}}
    if all((p / "config.json").is_file() and (p / "tokenizer.json").is_file() for p in paths.values()):
        return paths
    hidden, layers, heads, inter, vocab = SIZES[size]
    tok = _tokenizer()
    torch.manual_seed(0)
    random.seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False, torch_dtype="float32")
    model = LlamaForCausalLM(cfg).float()
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for i, (name, path) in enumerate(paths.items()):
            model.load_state_dict(base if name == "base" else _perturb(base, 1000 + i))
            model.save_pretrained(path, safe_serialization=True)
            tok.save_pretrained(path)
    return paths


def rows(paths: dict[str, Path], size: str) -> list[dict]:
    """One dict per row: id, method, setting, models (the fine-tunes used), random, config (mergekit's schema)."""
    layers = SIZES[size][1]
    base = str(paths["base"])
    fts = [str(paths[f"ft{i}"]) for i in range(1, FINE_TUNES + 1)]
    out: list[dict] = []

    def add(method: str, setting: str, config: dict, n: int, random_: bool = False, tag: str = "") -> None:
        cfg = {**config, "merge_method": method}
        cfg.setdefault("dtype", "float32")
        out.append({"id": f"{method}:{tag or setting}:{n}", "method": method, "setting": setting,
                    "models": f"{'base + ' if cfg.get('base_model') == base else ''}{n} ft", "random": random_,
                    "config": cfg})

    def models(n: int, weights=None, **per_model) -> list[dict]:
        res = []
        for i in range(n):
            params = {k: v[i] for k, v in per_model.items()}
            if weights is not None:
                params["weight"] = weights[i]
            res.append({"model": fts[i], **({"parameters": params} if params else {})})
        return res

    for n in (2, 3):
        w = [0.6, 0.3, 0.4][:n]
        add("linear", "normalize true", {"models": models(n, w), "parameters": {"normalize": True}}, n, tag="normalize")
        add("linear", "normalize false", {"models": models(n, [0.5, 0.3, 0.4][:n]),
                                          "parameters": {"normalize": False}}, n, tag="no-normalize")
        add("task_arithmetic", "lambda 0.7", {"base_model": base, "models": models(n, w),
                                              "parameters": {"lambda": 0.7}}, n, tag="lambda")
        add("ties", "density 0.5, normalize true", {"base_model": base, "models": models(n, w),
                                                    "parameters": {"density": 0.5, "normalize": True}}, n,
            tag="density")
        for method in ("breadcrumbs", "breadcrumbs_ties"):
            add(method, "density 0.8, gamma 0.05", {"base_model": base, "models": models(n, w),
                                                    "parameters": {"density": 0.8, "gamma": 0.05}}, n,
                tag="density")
        add("breadcrumbs", "default density and gamma", {"base_model": base, "models": models(n, w)}, n,
            tag="default")
        add("multislerp", "base, weights", {"base_model": base, "models": models(n, w)}, n, tag="base")
        add("karcher", "no base", {"models": models(n)}, n, tag="nobase")
        add("model_stock", "defaults", {"base_model": base, "models": models(n)}, n)
        add("sce", "select_topk 0.5", {"base_model": base, "models": models(n, w),
                                       "parameters": {"select_topk": 0.5}}, n, tag="topk")
        for method in ("della", "della_linear"):
            add(method, "density 0.5, epsilon 0.1", {"base_model": base, "models": models(n, w),
                                                     "parameters": {"density": 0.5, "epsilon": 0.1}}, n, True,
                tag="density")
        for method in ("dare_ties", "dare_linear"):
            add(method, "density 0.5", {"base_model": base, "models": models(n, w),
                                        "parameters": {"density": 0.5}}, n, True, tag="density")
    two = models(2)
    add("slerp", "base_model = ft1, t 0.3", {"base_model": fts[0], "models": two, "parameters": {"t": 0.3}}, 2,
        tag="t")
    add("slerp", "gradient t [0, 0.5, 1]", {"base_model": fts[0], "models": two,
                                            "parameters": {"t": [0, 0.5, 1]}}, 2, tag="gradient")
    add("ties", "per-model density/weight gradients, filter mlp (examples/ties.yml)", {
        "base_model": base,
        "models": [{"model": fts[0], "parameters": {"density": [1, 0.7, 0.1], "weight": 1.0}},
                   {"model": fts[1], "parameters": {"density": 0.5, "weight": [0, 0.3, 0.7, 1]}},
                   {"model": fts[2], "parameters": {"density": 0.33, "weight": [{"filter": "mlp", "value": 0.5},
                                                                               {"value": 0}]}}],
        "parameters": {"normalize": True, "int8_mask": True}}, 3, tag="gradient")
    add("nuslerp", "base, weights 0.7/0.3", {"base_model": base, "models": models(2, [0.7, 0.3])}, 2, tag="base")
    add("nuslerp", "no base, weights 0.7/0.3", {"models": models(2, [0.7, 0.3])}, 2, tag="nobase")
    add("nearswap", "t 0.0001", {"base_model": base, "models": models(1), "parameters": {"t": 0.0001}}, 1, tag="t")
    add("arcee_fusion", "defaults", {"base_model": base, "models": models(1)}, 1)
    half = layers // 2
    add("passthrough", f"slices ft1 [0, {half + 1}] + ft2 [{half - 1}, {layers}]", {
        "slices": [{"sources": [{"model": fts[0], "layer_range": [0, half + 1]}]},
                   {"sources": [{"model": fts[1], "layer_range": [half - 1, layers]}]}]}, 2, tag="slices")
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in out))}
    return sorted(out, key=lambda r: order[r["method"]])  # stable: a method's rows together, 2 before 3
