"""Racing's settings (``evolution.racing``; the rules are in ``racing.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RacingConfig(BaseModel):
    """Score offspring on a part of the fitness set first, on more only while the rule lets them
    go on (`evo_merge/racing.py`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = Field(True, description="off in pool.mode async unless set (rule survival is generational)")
    stages: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0], min_length=1,
                                description="cumulative fractions of each task's fitness rows, ending at 1")
    rule: Literal["survival", "halving", "estimate", "hoeffding"] = Field(
        "survival", description="survival: those the run's own selection keeps from the population and the "
        "offspring, each offspring's unscored rows counted at the population's best on them; halving: the "
        "fittest keep share of those still racing go on after each stage; estimate: those whose score on the "
        "rows so far reaches the weakest survivor's on the same rows, less margin; hoeffding: those a "
        "confidence bound says can still reach it")
    order: Literal["informative", "given"] = Field(
        "informative", description="which rows each stage takes: informative, those on which the population's "
        "scores differ most first (generational runs; ties in row order); given, the fitness rows in order")
    keep: float = Field(0.5, gt=0, le=1, description="rule halving: share that goes on after each stage")
    margin: float = Field(0.0, ge=0, le=1, description="rule estimate: how far below the cut an offspring may "
                          "score and still go on")
    delta: float = Field(0.05, gt=0, lt=1, description="rule hoeffding: the bound's failure probability")
    search: Literal["race", "first_stage", "full"] = Field(
        "first_stage", description="coefficient-search candidates: race against the search's best, scored on "
        "the first stage only (the search result on every row), or on every row")

    @model_validator(mode="after")
    def _increasing(self) -> "RacingConfig":
        s = self.stages
        if any(not 0 <= a < b <= 1 for a, b in zip([0.0, *s], s)) or s[-1] != 1.0:
            raise ValueError(f"stages must increase within (0, 1] and end at 1, got {s}")
        return self
