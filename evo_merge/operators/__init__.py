"""Evolutionary operators (one module each: crossover, composition, split point, mutation,
succession) and the rules they use (parent choice, coefficients, selection, niches)."""
