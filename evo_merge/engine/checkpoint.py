"""The checkpoint a resume starts from: the generation, its population, the generator's
state and, in steady-state mode, the scheduler's counters and the recipes in flight. It is
written in the same transaction that closes a generation (``LineageDB.set_population``,
which adds ``last_id``, the last individual it covers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Checkpoint:
    generation: int
    population: list[int]
    rng_state: dict[str, Any]
    scheduler: dict[str, Any] | None = None  # steady state: planned, done, generation, inflight recipes
    last_id: int | None = None

    def to_json(self, with_last_id: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"generation": self.generation, "population": list(self.population),
                                "rng_state": self.rng_state}
        if self.scheduler is not None:
            data["async"] = self.scheduler
        if with_last_id:
            data["last_id"] = self.last_id
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Checkpoint":
        return cls(data["generation"], list(data["population"]), data["rng_state"], data.get("async"),
                   data.get("last_id"))

    @classmethod
    def load(cls, db) -> "Checkpoint | None":
        data = db.meta("checkpoint")
        return None if data is None else cls.from_json(data)
