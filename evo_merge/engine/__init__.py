"""The evolutionary engine, in small roles: the population state, the planner, the shared
ask/tell steps and checkpoints (``core``), and the drivers: generational, steady state,
coefficient searches, and the final report."""

from evo_merge.engine.core import Engine
from evo_merge.engine.hooks import EngineHooks, GenerationReport

__all__ = ["Engine", "EngineHooks", "GenerationReport"]
