"""Run directories: weights by content hash, SQLite lineage, resolved config."""

from evo_merge.store.lineage import Individual, LineageDB
from evo_merge.store.run_store import RunStore, weight_store_line, weight_store_usage
from evo_merge.store.weights import WeightStore

__all__ = ["Individual", "LineageDB", "RunStore", "WeightStore", "weight_store_line", "weight_store_usage"]
