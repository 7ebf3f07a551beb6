"""Build the demo population: a tiny Llama base plus one LoRA and one full fine-tune per skill.

The base learns every rule of every skill family (see ``skills.py``) but not which rule
a question's keyword asks for, so it answers all skill questions wrongly. Each expert
then learns one keyword from that common point, with a quarter of its data repeating the
base's data on the other families so that it leaves them alone. Runs on CPU in well under
a minute; the same seed gives bit-identical weight files.

    python populations/build_demo.py OUT_DIR [--seed S] [--quick]
"""
# No "from __future__ import annotations": evo_merge loads this file as a module that is not
# in sys.modules, and dataclasses cannot resolve string annotations there.

import argparse
import hashlib
import json
import random
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from skills import SKILLS, Skill, family_qa, qa

VERSION = "1"
SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")
CHARS = "".join(chr(c) for c in range(32, 127))
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

Example = tuple[str, tuple[str, ...]]  # question, its one-character answer(s)
Data = tuple[torch.Tensor, torch.Tensor]  # token ids (N, width), targets (N, width, answers)


@dataclass(frozen=True)
class Schedule:
    """Training lengths and rates of one build."""

    base_steps: int = 1000
    lora_steps: int = 150
    full_steps: int = 150
    batch: int = 64
    base_lr: float = 3e-3
    lora_lr: float = 3e-3
    full_lr: float = 1e-3
    replay: float = 0.25  # share of an expert's data repeating the base's data on other families
    pool: int = 4096  # examples drawn per training set


QUICK = Schedule(base_steps=4, lora_steps=2, full_steps=2, pool=256)


def make_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII; puts <s> in front of every text."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + tuple(CHARS))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.add_special_tokens(list(SPECIALS))
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def make_model(tok: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama (seed torch first)."""
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def encode(tok: PreTrainedTokenizerFast, examples: list[Example]) -> Data:
    """Right-padded ids "<s>question answer</s>" and the targets to learn at each position.

    A question with several answers (the base's data) spreads its loss over them by how
    often each is listed. Targets are -100 where nothing is learned.
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


def base_examples(rng: random.Random, n: int, skills: list[Skill]) -> list[Example]:
    """Questions of ``skills``, each answered by all rules of its family."""
    return [family_qa(rng.choice(skills), rng) for _ in range(n)]


def expert_examples(skill: Skill, rng: random.Random, n: int, replay: float) -> list[Example]:
    """Questions of one skill with their answers, plus the base's data on the other families."""
    n_replay = int(n * replay)
    own = [(q, (a,)) for q, a in (qa(skill, rng) for _ in range(n - n_replay))]
    others = [s for s in SKILLS.values() if s.family is not skill.family]
    return own + base_examples(rng, n_replay, others)


def loss_on(model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over target positions, each spread over its listed answers."""
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


def train_base(tok: PreTrainedTokenizerFast, plan: Schedule, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    base = make_model(tok)
    data = encode(tok, base_examples(random.Random(seed), plan.pool, list(SKILLS.values())))
    train(base, data, plan.base_steps, plan.base_lr, plan.batch, seed)
    return base


def train_lora(base_dir: Path, data: Data, plan: Schedule, init_seed: int, data_seed: int) -> torch.nn.Module:
    """A LoRA adapter on one skill; ``init_seed`` is shared so all experts start from the same A."""
    torch.manual_seed(init_seed)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base_dir), config)
    train(model, data, plan.lora_steps, plan.lora_lr, plan.batch, data_seed)
    return model


def train_full(base_dir: Path, data: Data, plan: Schedule, data_seed: int) -> LlamaForCausalLM:
    model = LlamaForCausalLM.from_pretrained(base_dir)
    train(model, data, plan.full_steps, plan.full_lr, plan.batch, data_seed)
    return model


def save_model(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, path: Path) -> None:
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)


def write_manifest(out_dir: Path, fields: dict) -> None:
    """``fields`` (builder, version, seed, what was built) and the sha256 of every weight file."""
    hashes = {p.relative_to(out_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted(out_dir.rglob("*.safetensors"))}
    (out_dir / "manifest.json").write_text(json.dumps({**fields, "sha256": hashes}, indent=2) + "\n")


@contextmanager
def quiet_deterministic() -> Iterator[None]:
    """One intra-op thread and a forked RNG (bit-reproducible, caller's state untouched),
    gradients on (a caller may have turned them off), no progress bars or warnings;
    everything restored afterwards."""
    threads, bars = torch.get_num_threads(), hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()


def build(out_dir: Path, seed: int = 0, quick: bool = False) -> None:
    """Write base/, lora/<skill>/, full/<skill>/ and manifest.json under ``out_dir``."""
    plan = QUICK if quick else Schedule()
    out_dir = Path(out_dir)
    base_dir = out_dir / "base"
    with quiet_deterministic():
        tok = make_tokenizer()
        save_model(train_base(tok, plan, seed), tok, base_dir)
        for i, skill in enumerate(SKILLS.values(), start=1):
            data_seed = seed * 1000 + i
            data = encode(tok, expert_examples(skill, random.Random(data_seed), plan.pool, plan.replay))
            save_model(train_full(base_dir, data, plan, data_seed), tok, out_dir / "full" / skill.name)
            train_lora(base_dir, data, plan, seed, data_seed).save_pretrained(out_dir / "lora" / skill.name)
    write_manifest(out_dir, {"builder": "build_demo", "version": VERSION, "seed": seed, "quick": quick,
                             "skills": list(SKILLS)})


def run_cli(build_fn, description: str) -> None:
    """A builder's command line: OUT_DIR [--seed N] [--quick]."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="train only a few steps (for tests)")
    args = parser.parse_args()
    build_fn(args.out_dir, args.seed, args.quick)


def main() -> None:
    run_cli(build, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
