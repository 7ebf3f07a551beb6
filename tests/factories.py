"""Tiny random-init populations and tasks for fast tests (no training, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

VOCAB = ["<pad>", "<s>", "</s>", "<unk>"] + list("abcdefghij0123456789 :?=")


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


ARCHS = ("llama", "qwen2", "gemma2")


def make_arch_model(arch: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random-init tiny model of a real architecture (the shapes' ratios, not their sizes)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    elif arch == "gemma2":
        model = Gemma2ForCausalLM(Gemma2Config(**common, head_dim=8, sliding_window=16))
    else:
        raise ValueError(arch)
    return model.to(dtype)


def write_population(root: Path, kind: str, arch: str = "llama", dtype: torch.dtype = torch.float32,
                     n: int = 3) -> Path:
    """Base + n members (full fine-tunes or PEFT LoRA adapters) of one architecture, saved in ``dtype``."""
    from peft import LoraConfig, get_peft_model

    base_dir = root / "base"
    make_arch_model(arch, dtype=dtype).save_pretrained(base_dir, safe_serialization=True)
    make_tokenizer().save_pretrained(base_dir)
    members = []
    for i in range(n):
        model = make_arch_model(arch, dtype=dtype)
        torch.manual_seed(300 + i)
        out = root / f"{kind}{i}"
        if kind == "full":
            with torch.no_grad():
                for p in model.parameters():
                    p.add_((torch.randn_like(p, dtype=torch.float32) * 0.02).to(dtype))
            model.save_pretrained(out, safe_serialization=True)
            make_tokenizer().save_pretrained(out)
        else:
            peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
            with torch.no_grad():
                for name, p in peft_model.named_parameters():
                    if "lora_B" in name:
                        p.normal_(0, 0.05)
            peft_model.save_pretrained(out)
        members.append(out)
    spec = {"name": f"tiny-{arch}-{kind}", "kind": kind, "base_model": str(base_dir),
            "members": [{"name": f"m{i}", "path": str(p)} for i, p in enumerate(members)]}
    path = root / f"population-{kind}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_task(root: Path, n_rows: int = 40, name: str = "tiny", metric: str = "mc_loglik") -> Path:
    rows = []
    for i in range(n_rows):
        a, b = i % 10, (i * 3) % 10
        rows.append({"id": i, "question": f"{a}+{b}=", "choices": [str(d) for d in range(10)], "answer": str((a + b) % 10)})
    data = root / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": name, "dataset": {"path": data.name}, "prompt": "{question}", "answer_field": "answer",
            "metric": metric, "fitness_samples": n_rows // 2, "test_samples": n_rows // 4}
    if metric.startswith("mc_loglik"):
        spec["choices_field"] = "choices"
    else:
        spec["max_new_tokens"] = 2
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_run_config(root: Path, population: Path, task: Path, **evolution) -> Path:
    cfg = {"seed": 0, "out": str(root / "run"), "population": str(population),
           "tasks": [{"spec": str(task)}],
           "evolution": {"generations": 2, "population_size": 4, **evolution},
           "eval": {"batch_size": 32, "device": "cpu"}}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


