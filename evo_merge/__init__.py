"""evo-merge: gradient-free evolution of populations of same-architecture LLMs."""

__version__ = "0.1.0"
