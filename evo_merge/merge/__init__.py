"""Merge methods (registry and built-ins) and whole-genome merging."""

from evo_merge.merge.genome_merge import merge_genomes, merge_genomes_grouped
from evo_merge.merge.registry import MergeMethod, get_merge_method, merge_method, merge_methods

__all__ = ["MergeMethod", "get_merge_method", "merge_genomes", "merge_genomes_grouped", "merge_method", "merge_methods"]
