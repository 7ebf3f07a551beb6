"""The stall rule: when the best fitness has not risen for ``patience`` generations (or the
population's spread has collapsed), the next generation acts: immigrants, larger mutations,
or a restart from the best individuals found so far.

Its state is the generations' history (best, spread, whether the rule acted), which the
lineage database holds, so a resumed run takes the same decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evo_merge.config import StallConfig


@dataclass
class StallRule:
    cfg: StallConfig
    history: list[tuple[int, float, float, bool]] = field(default_factory=list)  # generation, best, std, acted

    @classmethod
    def from_db(cls, cfg: StallConfig, db) -> "StallRule":
        return cls(cfg, [(g["generation"], g["best"], g["std"], bool(g["events"])) for g in db.generations()])

    def record(self, generation: int, best: float, std: float, acted: bool) -> None:
        self.history = [h for h in self.history if h[0] < generation] + [(generation, best, std, acted)]

    def stalled(self) -> dict[str, Any] | None:
        """Why the search counts as stalled after the last recorded generation, or None."""
        if not self.cfg.enabled or not self.history:
            return None
        best, last_rise, last_act = float("-inf"), self.history[0][0], self.history[0][0]
        for generation, top, _, acted in self.history:
            if top > best + self.cfg.min_delta:
                best, last_rise = top, generation
            if acted:
                last_act = generation
        current, _, spread, _ = self.history[-1]
        since = max(last_rise, last_act)
        if current - since >= self.cfg.patience:
            return {"reason": f"best fitness {best:.4f} has not risen for {current - since} generations",
                    "since": since}
        if self.cfg.min_spread > 0 and spread < self.cfg.min_spread and current > last_act:
            return {"reason": f"fitness spread {spread:.4f} is below {self.cfg.min_spread}", "since": current}
        return None
