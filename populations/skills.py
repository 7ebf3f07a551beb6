"""Synthetic skills of the demo population: short questions with one-character answers.

Skills come in rival pairs that read alike and answer differently on the same operands
(add/sub, next/prev, max/min): an expert of one skill answers its rival's questions with
its own rule, so merging in the wrong expert hurts. Every generator draws from a seeded
``random.Random`` only, so the same seed gives the same examples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"

Operands = tuple[int, ...]


@dataclass(frozen=True)
class Skill:
    """One skill: operands -> question text and one-character answer."""

    name: str
    rival: str
    alphabet: str
    draw: Callable[[random.Random], Operands]
    render: Callable[[Operands], str]
    solve: Callable[[Operands], str]


def _digits(n: int) -> Callable[[random.Random], Operands]:
    return lambda rng: tuple(rng.randrange(10) for _ in range(n))


def _letter(rng: random.Random) -> Operands:
    return (rng.randrange(26),)


def _joined(ops: Operands) -> str:
    return "".join(map(str, ops))


SKILLS: dict[str, Skill] = {s.name: s for s in (
    Skill("add", "sub", DIGITS, _digits(2), lambda o: f"{o[0]}+{o[1]}=", lambda o: str((o[0] + o[1]) % 10)),
    Skill("sub", "add", DIGITS, _digits(2), lambda o: f"{o[0]}-{o[1]}=", lambda o: str((o[0] - o[1]) % 10)),
    Skill("next", "prev", LETTERS, _letter, lambda o: f"next {LETTERS[o[0]]}=", lambda o: LETTERS[(o[0] + 1) % 26]),
    Skill("prev", "next", LETTERS, _letter, lambda o: f"prev {LETTERS[o[0]]}=", lambda o: LETTERS[(o[0] - 1) % 26]),
    Skill("max", "min", DIGITS, _digits(3), lambda o: f"max {_joined(o)}=", lambda o: str(max(o))),
    Skill("min", "max", DIGITS, _digits(3), lambda o: f"min {_joined(o)}=", lambda o: str(min(o))),
)}


def qa(skill: Skill, rng: random.Random) -> tuple[str, str]:
    """One (question, answer) pair."""
    ops = skill.draw(rng)
    return skill.render(ops), skill.solve(ops)


def mc_example(skill: Skill, rng: random.Random, n_choices: int = 4) -> dict:
    """A multiple-choice row; the rival skill's answer is always among the wrong choices."""
    ops = skill.draw(rng)
    answer = skill.solve(ops)
    choices = [answer]
    rival = SKILLS[skill.rival].solve(ops)
    if rival != answer:
        choices.append(rival)
    while len(choices) < n_choices:
        c = rng.choice(skill.alphabet)
        if c not in choices:
            choices.append(c)
    rng.shuffle(choices)
    return {"question": skill.render(ops), "choices": choices, "answer": answer}


def gen_example(skill: Skill, rng: random.Random) -> dict:
    """A generation row: the model must write the answer itself."""
    question, answer = qa(skill, rng)
    return {"question": question, "answer": answer}
