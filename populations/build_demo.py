"""Build the demo population: a tiny Llama base plus one LoRA and one full fine-tune per skill.

The base learns the answer format of every skill (question -> one character of the right
kind -> end of text) with mostly random answers, so it starts near chance on all skills.
Each expert is then trained on one skill from that common point. Runs on CPU in well
under a minute; the same seed gives bit-identical weight files.

    python populations/build_demo.py OUT_DIR [--seed S] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from skills import SKILLS, Skill, qa  # noqa: E402

VERSION = "1"
SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")
CHARS = "".join(chr(c) for c in range(32, 127))
MAX_LEN = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Schedule:
    """Training lengths and rates of one build."""

    base_steps: int = 600
    lora_steps: int = 300
    full_steps: int = 300
    batch: int = 64
    base_lr: float = 3e-3
    lora_lr: float = 3e-3
    full_lr: float = 1e-3
    real_fraction: float = 0.1  # share of true answers in the base's format data
    pool: int = 4096  # examples drawn per training pool


QUICK = Schedule(base_steps=4, lora_steps=2, full_steps=2, pool=256)


def make_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII; adds <s> in front of every text."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + tuple(CHARS))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.add_special_tokens(list(SPECIALS))
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def make_model(tok: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama (call after seeding torch)."""
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def encode(tok: PreTrainedTokenizerFast, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids "<s>question answer</s>" right-padded, and labels on the answer and </s> only."""
    ids = torch.full((len(pairs), MAX_LEN), tok.pad_token_id)
    labels = torch.full((len(pairs), MAX_LEN), -100)
    for row, (question, answer) in enumerate(pairs):
        q = tok(question)["input_ids"]
        a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids[row, :len(q) + len(a)] = torch.tensor(q + a)
        labels[row, len(q):len(q) + len(a)] = torch.tensor(a)
    return ids, labels


def format_pairs(rng: random.Random, n: int, real_fraction: float) -> list[tuple[str, str]]:
    """Questions of every skill, answered at random (of the right kind) except a few."""
    skills = list(SKILLS.values())
    pairs = []
    for _ in range(n):
        skill = rng.choice(skills)
        question, answer = qa(skill, rng)
        pairs.append((question, answer if rng.random() < real_fraction else rng.choice(skill.alphabet)))
    return pairs


def skill_pairs(skill: Skill, rng: random.Random, n: int) -> list[tuple[str, str]]:
    return [qa(skill, rng) for _ in range(n)]


def train(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], steps: int, lr: float,
          batch: int, seed: int) -> None:
    """AdamW with linear decay over random batches drawn from ``data`` in a seeded order."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(steps, 1))
    order = torch.Generator().manual_seed(seed)
    ids, labels = data
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(ids), (batch,), generator=order)
        loss = model(input_ids=ids[idx], labels=labels[idx]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    model.eval()


def lora_expert(base: LlamaForCausalLM, data: tuple[torch.Tensor, torch.Tensor], plan: Schedule,
                seed: int, data_seed: int) -> torch.nn.Module:
    """A LoRA adapter trained on one skill; every expert starts from the same A factors."""
    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    train(model, data, plan.lora_steps, plan.lora_lr, plan.batch, data_seed)
    return model


def full_expert(base_dir: Path, data: tuple[torch.Tensor, torch.Tensor], plan: Schedule,
                data_seed: int) -> LlamaForCausalLM:
    """A full fine-tune of the saved base on one skill."""
    model = LlamaForCausalLM.from_pretrained(base_dir)
    train(model, data, plan.full_steps, plan.full_lr, plan.batch, data_seed)
    return model


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(out_dir: Path, seed: int, plan: Schedule) -> None:
    """Skills, seed, builder version and the sha256 of every weight file."""
    weights = sorted(out_dir.rglob("*.safetensors"))
    manifest = {
        "builder": "build_demo", "version": VERSION, "seed": seed, "quick": plan == QUICK,
        "skills": list(SKILLS),
        "sha256": {p.relative_to(out_dir).as_posix(): sha256(p) for p in weights},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread (bit-reproducible CPU kernels), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build(out_dir: Path, seed: int = 0, quick: bool = False) -> None:
    """Write base/, lora/<skill>/, full/<skill>/ and manifest.json under ``out_dir``."""
    plan = QUICK if quick else Schedule()
    out_dir = Path(out_dir)
    with single_thread():
        tok = make_tokenizer()
        torch.manual_seed(seed)
        base = make_model(tok)
        rng = random.Random(seed)
        train(base, encode(tok, format_pairs(rng, plan.pool, plan.real_fraction)),
              plan.base_steps, plan.base_lr, plan.batch, seed)
        base.save_pretrained(out_dir / "base", safe_serialization=True)
        tok.save_pretrained(out_dir / "base")
        for i, skill in enumerate(SKILLS.values(), start=1):
            data_seed = seed * 1000 + i
            data = encode(tok, skill_pairs(skill, random.Random(data_seed), plan.pool))
            full = full_expert(out_dir / "base", data, plan, data_seed)
            full.save_pretrained(out_dir / "full" / skill.name, safe_serialization=True)
            tok.save_pretrained(out_dir / "full" / skill.name)
            lora = lora_expert(LlamaForCausalLM.from_pretrained(out_dir / "base"), data, plan, seed, data_seed)
            lora.save_pretrained(out_dir / "lora" / skill.name, safe_serialization=True)
        write_manifest(out_dir, seed, plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="train only a few steps (tests)")
    args = parser.parse_args()
    build(args.out_dir, args.seed, args.quick)


if __name__ == "__main__":
    main()
