"""Synthetic skills of the demo population: short questions with one-character answers.

Skills come in families. A family has one kind of operands (two digits, a letter, a
digit) and four rules for them: two skills, asked for by their keyword ("add 34=",
"sub 34="), and two decoys that no question asks for (max, min). The base model learns all
four rules of a family but not which one a keyword means, leaning slightly towards the
decoys, so it answers every skill question wrongly. An expert learns that its keyword
means its rule. The two skills of a family are rivals: an expert of one answers the
other's questions with its own rule, so merging in the wrong expert hurts.
Multiple-choice rows offer the answers of all four rules. Everything draws from a seeded
``random.Random`` only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SKILL_SHARE, DECOY_SHARE = 3, 4  # relative weight of skill and decoy rules in the base's data

Operands = tuple[int, ...]
Rule = Callable[[Operands], str]


class RuleFamily:
    """What every skill family does (this population's and the hard benchmark's): its rules,
    and operands on which they all answer differently."""

    skills: dict[str, Rule]
    decoys: dict[str, Rule]
    draw_operands: Callable[[random.Random], Operands]  # a method, or a field holding a function

    @property
    def rules(self) -> dict[str, Rule]:
        return {**self.skills, **self.decoys}

    def draw(self, rng: random.Random) -> Operands:
        """Random operands on which all rules give different answers."""
        while True:
            ops = self.draw_operands(rng)
            if len({rule(ops) for rule in self.rules.values()}) == len(self.rules):
                return ops


@dataclass(frozen=True)
class Family(RuleFamily):
    """Operands of one kind, the skills asked for on them, and decoy rules."""

    alphabet: str
    arity: int
    skills: dict[str, Rule]
    decoys: dict[str, Rule]

    def draw_operands(self, rng: random.Random) -> Operands:
        return tuple(rng.randrange(len(self.alphabet)) for _ in range(self.arity))

    def spell(self, ops: Operands) -> str:
        return "".join(self.alphabet[i] for i in ops)


def _shift(alphabet: str, k: int) -> Rule:
    return lambda o: alphabet[(o[0] + k) % len(alphabet)]


FAMILIES = (
    Family(DIGITS, 2, {"add": lambda o: str((o[0] + o[1]) % 10), "sub": lambda o: str((o[0] - o[1]) % 10)},
           {"max": lambda o: str(max(o)), "min": lambda o: str(min(o))}),
    Family(LETTERS, 1, {"next": _shift(LETTERS, 1), "prev": _shift(LETTERS, -1)},
           {"skip": _shift(LETTERS, 2), "back": _shift(LETTERS, -2)}),
    Family(DIGITS, 1, {"inc": _shift(DIGITS, 1), "dec": _shift(DIGITS, -1)},
           {"inc2": _shift(DIGITS, 2), "dec2": _shift(DIGITS, -2)}),
)


@dataclass(frozen=True)
class Skill:
    """One skill: a keyword of a family whose answer follows the rule of the same name."""

    name: str
    family: Family

    def question(self, ops: Operands) -> str:
        return f"{self.name} {self.family.spell(ops)}="

    def solve(self, ops: Operands) -> str:
        return self.family.skills[self.name](ops)


SKILLS: dict[str, Skill] = {name: Skill(name, fam) for fam in FAMILIES for name in fam.skills}


def qa(skill: Skill, rng: random.Random) -> tuple[str, str]:
    """One (question, answer) pair."""
    ops = skill.family.draw(rng)
    return skill.question(ops), skill.solve(ops)


def family_qa(skill: Skill, rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """A question with the answers of every rule of its family, listed as often as their
    share: what the base learns from."""
    ops = skill.family.draw(rng)
    fam = skill.family
    answers = [rule(ops) for rule in fam.skills.values() for _ in range(SKILL_SHARE)]
    answers += [rule(ops) for rule in fam.decoys.values() for _ in range(DECOY_SHARE)]
    return skill.question(ops), tuple(answers)


def mc_example(skill: Skill, rng: random.Random) -> dict:
    """A multiple-choice row whose choices are the answers of all rules of the skill's family."""
    ops = skill.family.draw(rng)
    choices = [rule(ops) for rule in skill.family.rules.values()]
    rng.shuffle(choices)
    return {"question": skill.question(ops), "choices": choices, "answer": skill.solve(ops)}


def gen_example(skill: Skill, rng: random.Random) -> dict:
    """A generation row: the model must write the answer itself."""
    question, answer = qa(skill, rng)
    return {"question": question, "answer": answer}
