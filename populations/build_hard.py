"""Build the hard benchmark's population: a tiny 4-layer Llama base and eight LoRA experts,
each carrying two skills in different halves of the layers.

The base learns every rule of every skill family (``hard_skills.py``) but not which rule a
keyword asks for. For each skill, two single-skill LoRA adapters are trained from the
base, one on the lower half of the layers and one on the upper half (PEFT's
``layers_to_transform``). Each expert is the lower-half adapter of one skill stacked with
the upper-half adapter of another skill of another family (one adapter over all layers):
so every expert helps a target with one half and, where the target asks for the other
skill's rival, hurts it with the other half. A plain or tuned weighted average of experts
cannot keep one half of an expert and drop the other; a per-layer composition can.

    python populations/build_hard.py OUT_DIR [--seed S] [--quick]
"""
# No "from __future__ import annotations": evo_merge loads this file as a module that is not
# in sys.modules (see build_demo.py).

import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from build_demo import (LORA_TARGETS, encode, make_tokenizer, quiet_deterministic, run_cli, save_model, train,
                        write_manifest)
from hard_skills import SKILLS
from skills import family_qa, qa

VERSION = "1"
LAYERS = 4
# expert -> (skill in the lower half of the layers, skill in the upper half)
EXPERTS = {
    "fst-dif": ("fst", "dif"), "dif-fst": ("dif", "fst"), "mul-lst": ("mul", "lst"), "lst-mul": ("lst", "mul"),
    "up-neg": ("up", "neg"), "neg-up": ("neg", "up"), "sq-rot": ("sq", "rot"), "rot-sq": ("rot", "sq"),
}


@dataclass(frozen=True)
class Schedule:
    base_steps: int = 1500
    half_steps: int = 200
    batch: int = 64
    lr: float = 3e-3
    replay: float = 0.25  # share of a half-adapter's data repeating the base's data on the other families
    pool: int = 4096


QUICK = Schedule(base_steps=4, half_steps=2, pool=256)


def make_model(tok) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=192, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def lora_config(layers=None) -> LoraConfig:
    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
                      layers_to_transform=layers)


def half_adapter(base_dir: Path, tok, skill: str, layers: list, plan: Schedule, seed: int) -> dict:
    """A one-skill adapter trained on ``layers`` only; its LoRA tensors."""
    rng = random.Random(seed)
    n_replay = int(plan.pool * plan.replay)
    own = [(q, (a,)) for q, a in (qa(SKILLS[skill], rng) for _ in range(plan.pool - n_replay))]
    others = [s for s in SKILLS.values() if s.family is not SKILLS[skill].family]
    data = encode(tok, own + [family_qa(rng.choice(others), rng) for _ in range(n_replay)])
    torch.manual_seed(seed)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base_dir), lora_config(layers))
    train(model, data, plan.half_steps, plan.lr, plan.batch, seed)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def stack(base_dir: Path, lower: dict, upper: dict, out: Path) -> None:
    """One adapter over all layers: ``lower``'s tensors in the lower half, ``upper``'s above."""
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base_dir), lora_config())
    state = model.state_dict()
    for key in state:
        if "lora_" in key:
            layer = int(re.search(r"\.layers\.(\d+)\.", key).group(1))
            state[key] = (lower if layer < LAYERS // 2 else upper)[key].clone()
    model.load_state_dict(state)
    model.save_pretrained(out)


def build(out_dir: Path, seed: int = 0, quick: bool = False) -> None:
    """Write base/, lora/<expert>/ and manifest.json under ``out_dir``."""
    plan = QUICK if quick else Schedule()
    out_dir = Path(out_dir)
    base_dir = out_dir / "base"
    lower_layers, upper_layers = list(range(LAYERS // 2)), list(range(LAYERS // 2, LAYERS))
    with quiet_deterministic():
        tok = make_tokenizer()
        torch.manual_seed(seed)
        base = make_model(tok)
        rng = random.Random(seed)
        data = encode(tok, [family_qa(rng.choice(list(SKILLS.values())), rng) for _ in range(plan.pool)])
        train(base, data, plan.base_steps, plan.lr, plan.batch, seed)
        save_model(base, tok, base_dir)
        halves = {}
        for i, skill in enumerate(SKILLS):
            for half, layers in ((0, lower_layers), (1, upper_layers)):
                halves[skill, half] = half_adapter(base_dir, tok, skill, layers, plan, seed * 1000 + 10 * i + half)
        for name, (low, high) in EXPERTS.items():
            stack(base_dir, halves[low, 0], halves[high, 1], out_dir / "lora" / name)
    write_manifest(out_dir, {"builder": "build_hard", "version": VERSION, "seed": seed, "quick": quick,
                             "experts": {k: list(v) for k, v in EXPERTS.items()}})


def main() -> None:
    run_cli(build, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
