"""Nevergrad search over merge coefficients (LoraHub-style composition, per-layer recipes)."""

from evo_merge.search.coefficient_search import CoefficientSearch, SearchBest
from evo_merge.search.space import CoefficientSpace, make_optimizer

__all__ = ["CoefficientSearch", "CoefficientSpace", "SearchBest", "make_optimizer"]
