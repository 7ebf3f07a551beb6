"""Progress callbacks and the per-generation figures they receive."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationReport:
    generation: int
    best: float
    mean: float
    std: float
    offspring: int
    seconds: float


class EngineHooks:
    """Progress callbacks; the CLI draws bars and lines with them, tests ignore them."""

    def phase(self, name: str, total: int | None) -> None: ...
    def advance(self) -> None: ...
    def generation(self, report: GenerationReport) -> None: ...
    def event(self, generation: int, event: dict) -> None: ...
    def warning(self, message: str) -> None: ...
