"""Synthetic skills of the hard benchmark: four families of one-character answers.

Each family has one kind of operands and four rules: two skills, asked for by their
keyword ("fst qjw=", "lst qjw="), and two decoys no question asks for. The base model
learns all four rules of each family but not which one a keyword means; an expert learns
that its keyword means its rule and, since it never sees the family's other keyword,
answers that one with its own rule too: the two skills of a family are rivals.
Everything draws from a seeded ``random.Random`` only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from skills import RuleFamily, Skill  # skills, rows and rule checks work the same on any family

LETTERS = "abcdefghijklmnopqrstuvwxyz"
SKILL_SHARE, DECOY_SHARE = 3, 4  # relative weight of skill and decoy rules in the base's data

Operands = tuple
Rule = Callable[[Operands], str]


def _shift(c: str, k: int) -> str:
    return LETTERS[(LETTERS.index(c) + k) % 26]


@dataclass(frozen=True)
class Family(RuleFamily):
    """Operands of one kind (drawn and spelled), the skills asked for on them, and decoys."""

    draw_operands: Callable[[random.Random], Operands]
    spell: Callable[[Operands], str]
    skills: dict[str, Rule]
    decoys: dict[str, Rule]


FAMILIES = (
    Family(lambda r: tuple(r.choice(LETTERS) for _ in range(3)), "".join,          # three letters
           {"fst": lambda o: o[0], "lst": lambda o: o[2]},
           {"nx0": lambda o: _shift(o[0], 1), "nx2": lambda o: _shift(o[2], 1)}),
    Family(lambda r: (r.randrange(10), r.randrange(10)), lambda o: f"{o[0]}{o[1]}",  # two digits
           {"mul": lambda o: str(o[0] * o[1] % 10), "dif": lambda o: str(abs(o[0] - o[1]))},
           {"sum": lambda o: str((o[0] + o[1]) % 10), "avg": lambda o: str((o[0] + o[1]) // 2)}),
    Family(lambda r: (r.choice(LETTERS),), lambda o: o[0],                           # one letter
           {"up": lambda o: o[0].upper(), "rot": lambda o: _shift(o[0], 13)},
           {"upn": lambda o: _shift(o[0], 1).upper(), "f5": lambda o: _shift(o[0], 5)}),
    Family(lambda r: (r.randrange(10),), lambda o: str(o[0]),                         # one digit
           {"sq": lambda o: str(o[0] * o[0] % 10), "neg": lambda o: str((10 - o[0]) % 10)},
           {"dbl": lambda o: str(2 * o[0] % 10), "add3": lambda o: str((o[0] + 3) % 10)}),
)


SKILLS: dict[str, Skill] = {name: Skill(name, fam) for fam in FAMILIES for name in fam.skills}

