"""Synthetic skills of the demo population: short questions with one-character answers.

Skills come in families that share operands and a set of candidate rules, e.g. two
digits with the rules add, sub, max and min. The base model learns every rule of a
family but not which one a question's keyword asks for (its answers are drawn from all
rules), so it knows "a little of everything" yet sits at chance. An expert learns that
its keyword means its rule. Multiple-choice rows offer the answers of all rules of the
family, so only knowing the keyword beats chance. Everything draws from a seeded
``random.Random`` only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"

Operands = tuple[int, ...]
Rule = Callable[[Operands], str]


@dataclass(frozen=True)
class Family:
    """Operands of one kind, how to write them, and the rules the base knows for them."""

    alphabet: str
    arity: int
    rules: dict[str, Rule]

    def draw(self, rng: random.Random) -> Operands:
        """Random operands on which all rules give different answers."""
        while True:
            ops = tuple(rng.randrange(len(self.alphabet)) for _ in range(self.arity))
            if len({rule(ops) for rule in self.rules.values()}) == len(self.rules):
                return ops

    def spell(self, ops: Operands) -> str:
        return "".join(self.alphabet[i] for i in ops)


def _shift(alphabet: str, k: int) -> Rule:
    return lambda o: alphabet[(o[0] + k) % len(alphabet)]


def _pick(i: int) -> Rule:
    return lambda o: LETTERS[o[i]]


PAIR = Family(DIGITS, 2, {
    "add": lambda o: str((o[0] + o[1]) % 10), "sub": lambda o: str((o[0] - o[1]) % 10),
    "max": lambda o: str(max(o)), "min": lambda o: str(min(o))})
LETTER = Family(LETTERS, 1, {"next": _shift(LETTERS, 1), "prev": _shift(LETTERS, -1),
                             "skip": _shift(LETTERS, 2), "back": _shift(LETTERS, -2)})
DIGIT = Family(DIGITS, 1, {"inc": _shift(DIGITS, 1), "dec": _shift(DIGITS, -1),
                           "inc2": _shift(DIGITS, 2), "dec2": _shift(DIGITS, -2)})
WORD = Family(LETTERS, 4, {"first": _pick(0), "second": _pick(1), "third": _pick(2), "last": _pick(3)})


@dataclass(frozen=True)
class Skill:
    """One skill: a keyword of a family whose answer follows the rule of the same name."""

    name: str
    family: Family

    def question(self, ops: Operands) -> str:
        return f"{self.name} {self.family.spell(ops)}="

    def solve(self, ops: Operands) -> str:
        return self.family.rules[self.name](ops)


SKILLS: dict[str, Skill] = {name: Skill(name, fam) for name, fam in (
    ("add", PAIR), ("sub", PAIR), ("next", LETTER), ("prev", LETTER), ("inc", DIGIT), ("dec", DIGIT))}


def qa(skill: Skill, rng: random.Random) -> tuple[str, str]:
    """One (question, answer) pair."""
    ops = skill.family.draw(rng)
    return skill.question(ops), skill.solve(ops)


def family_qa(skill: Skill, rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """A question with the answers of every rule of its family: what the base learns from."""
    ops = skill.family.draw(rng)
    return skill.question(ops), tuple(skill.family.rules[rule](ops) for rule in sorted(skill.family.rules))


def mc_example(skill: Skill, rng: random.Random) -> dict:
    """A multiple-choice row whose choices are the answers of all rules of the skill's family."""
    ops = skill.family.draw(rng)
    choices = [skill.family.rules[rule](ops) for rule in sorted(skill.family.rules)]
    rng.shuffle(choices)
    return {"question": skill.question(ops), "choices": choices, "answer": skill.solve(ops)}


def gen_example(skill: Skill, rng: random.Random) -> dict:
    """A generation row: the model must write the answer itself."""
    question, answer = qa(skill, rng)
    return {"question": question, "answer": answer}
