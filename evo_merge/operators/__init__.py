"""Evolutionary operators: parent choice, coefficients, crossover, mutation, selection, succession, ensemble."""
