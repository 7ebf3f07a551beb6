"""From a task's rows to token ids and back: prompts (with or without the chat template and a
BOS token) and decoding that round-trips the tokenizer's own token strings.

``add_bos`` follows lm-eval's ``add_bos_token``: ``true`` always starts the prompt with the
BOS token, ``false`` never adds special tokens, ``auto`` keeps what the tokenizer does and
adds BOS only where the tokenizer defines its own BOS token (not the EOS token, as GPT-2's
does) but does not add it itself: a model trained with BOS would otherwise read from the
wrong start.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from evo_merge.errors import EvoMergeError
from evo_merge.fitness.scoring import left_pad_ids


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def choice_list(spec, row: dict[str, Any]) -> tuple[str, list[str], int]:
    """``choices_in_prompt`` (MMLU / ARC style): the lines listing the choices after the
    question, the scored continuations (" A", " B", ...) and the answer's index. The answer
    field may hold the index, the letter or the choice's text."""
    choices = [str(c) for c in row[spec.choices_field]]
    if len(choices) > len(LETTERS):
        raise EvoMergeError(f"task {spec.name}: {len(choices)} choices, at most {len(LETTERS)} can be lettered")
    answer = row[spec.answer_field]
    text = str(answer).strip()
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        index = answer
    elif len(text) == 1 and text.upper() in LETTERS[:len(choices)]:
        index = LETTERS.index(text.upper())
    elif text in choices:
        index = choices.index(text)
    else:
        raise EvoMergeError(f"task {spec.name}: answer {answer!r} is neither an index, a letter nor a choice")
    listing = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(choices)) + f"\n{spec.answer_prefix}"
    return listing, [f" {LETTERS[i]}" for i in range(len(choices))], index


def render_prompt(spec, row: dict[str, Any], tokenizer: Any) -> tuple[str, bool]:
    """The prompt text, and whether the tokenizer should add its special tokens to it: with
    ``chat_template`` the prompt is the user turn of the tokenizer's chat template, which
    brings its own. With ``choices_in_prompt`` the lettered choices follow the question."""
    try:
        text = spec.prompt.format(**row)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise EvoMergeError(f"task {spec.name}: prompt template cannot be filled: {exc!r}") from None
    if getattr(spec, "choices_in_prompt", False):
        text += choice_list(spec, row)[0]
    if not spec.chat_template:
        return text, True
    if not getattr(tokenizer, "chat_template", None):
        raise EvoMergeError(f"task {spec.name}: chat_template is on but the base tokenizer has no chat template")
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True), False


def adds_bos(spec, tokenizer: Any) -> bool:
    """Whether a BOS token must be put in front of what the tokenizer itself produces."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if spec.add_bos is False or spec.chat_template:
        return False
    if bos is None:
        if spec.add_bos is True:
            raise EvoMergeError(f"task {spec.name}: add_bos is true but the tokenizer has no BOS token")
        return False
    if tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]:
        return False  # the tokenizer adds it itself
    return spec.add_bos is True or bos not in (getattr(tokenizer, "eos_token_id", None),
                                               getattr(tokenizer, "pad_token_id", None))


def encode_prompt(spec, row: dict[str, Any], tokenizer: Any) -> list[int]:
    text, special = render_prompt(spec, row, tokenizer)
    ids = tokenizer(text, add_special_tokens=special and spec.add_bos is not False)["input_ids"]
    return [tokenizer.bos_token_id, *ids] if adds_bos(spec, tokenizer) else list(ids)


def encode(tokenizer: Any, text: str) -> list[int]:
    """A continuation (an answer or a choice): no special tokens."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Generation inputs: the rows left-padded, with their attention mask."""
    ids, mask, _ = left_pad_ids([list(r) for r in rows], pad_id)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def make_decoder(tokenizer: Any, samples: Sequence[str]) -> Callable[[Sequence[int]], str]:
    """``tokenizer.decode`` where it gives back the task's answers from their tokens; else the
    tokenizer's own token strings joined (a tokenizer without a decoder puts spaces between
    tokens, which no exact-match answer survives)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])

    def joined(ids: Sequence[int]) -> str:
        return "".join(tokenizer.convert_ids_to_tokens([int(i) for i in ids if int(i) not in special]))

    def decoded(ids: Sequence[int]) -> str:
        return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    texts = [s for s in samples if s][:20]
    if all(decoded(encode(tokenizer, s)) == s for s in texts):
        return decoded
    if all(joined(encode(tokenizer, s)) == s for s in texts):
        return joined
    return decoded
