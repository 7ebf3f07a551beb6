"""Evolutionary operators: parent choice, coefficients, crossover, mutation, selection, succession, ensemble."""
from evo_merge.operators import niches  # noqa: E402,F401 - registers the M2N2 selection and parent rules
