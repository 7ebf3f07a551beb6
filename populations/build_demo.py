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
from skills import SKILLS, Skill, family_qa, qa  # noqa: E402

VERSION = "1"
SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")
CHARS = "".join(chr(c) for c in range(32, 127))
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


Data = tuple[torch.Tensor, torch.Tensor]  # token ids (N, width), targets (N, width, answers)


def encode(tok: PreTrainedTokenizerFast, examples: list[tuple[str, tuple[str, ...]]]) -> Data:
    """Right-padded ids "<s>question answer</s>" and the targets to learn at each position.

    A question may have several one-character answers (the base's blurred data): the loss
    then spreads evenly over them. Targets are -100 where nothing is learned.
    """
    k = max(len(answers) for _, answers in examples)
    rows = [(tok(q)["input_ids"], tok.convert_tokens_to_ids(list(a))) for q, a in examples]
    width = max(len(q) for q, _ in rows) + 2
    ids = torch.full((len(rows), width), tok.pad_token_id)
    targets = torch.full((len(rows), width, k), -100)
    for row, (q, answers) in enumerate(rows):
        n = len(q)
        ids[row, :n + 2] = torch.tensor(q + [answers[0], tok.eos_token_id])
        targets[row, n] = torch.tensor([answers[i % len(answers)] for i in range(k)])
        targets[row, n + 1] = tok.eos_token_id
    return ids, targets


def base_examples(rng: random.Random, n: int) -> list[tuple[str, tuple[str, ...]]]:
    """Questions of every skill, each answered by all rules of its skill's family."""
    skills = list(SKILLS.values())
    return [family_qa(rng.choice(skills), rng) for _ in range(n)]


def skill_examples(skill: Skill, rng: random.Random, n: int) -> list[tuple[str, tuple[str, ...]]]:
    return [(q, (a,)) for q, a in (qa(skill, rng) for _ in range(n))]


def loss_on(model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over target positions, each spread evenly over its answers."""
    logp = model(input_ids=ids).logits[:, :-1].log_softmax(-1)
    wanted = targets[:, 1:]
    nll = -logp.gather(-1, wanted.clamp(min=0)).mean(-1)
    return nll[wanted[..., 0] >= 0].mean()


def train(model: torch.nn.Module, data: Data, steps: int, lr: float, batch: int, seed: int) -> None:
    """AdamW with linear decay over random batches drawn from ``data`` in a seeded order."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(steps, 1))
    order = torch.Generator().manual_seed(seed)
    ids, targets = data
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(ids), (batch,), generator=order)
        loss_on(model, ids[idx], targets[idx]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    model.eval()


def lora_expert(base: LlamaForCausalLM, data: Data, plan: Schedule,
                seed: int, data_seed: int) -> torch.nn.Module:
    """A LoRA adapter trained on one skill; every expert starts from the same A factors."""
    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    train(model, data, plan.lora_steps, plan.lora_lr, plan.batch, data_seed)
    return model


def full_expert(base_dir: Path, data: Data, plan: Schedule,
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
        train(base, encode(tok, base_examples(rng, plan.pool)),
              plan.base_steps, plan.base_lr, plan.batch, seed)
        base.save_pretrained(out_dir / "base", safe_serialization=True)
        tok.save_pretrained(out_dir / "base")
        for i, skill in enumerate(SKILLS.values(), start=1):
            data_seed = seed * 1000 + i
            data = encode(tok, skill_examples(skill, random.Random(data_seed), plan.pool))
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
