"""Run store: bit-exact weights, checksums, lineage round trip, refusal to overwrite."""

import pytest
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome
from evo_merge.store import Individual, RunStore


def test_weights_round_trip_bit_exactly(tmp_path):
    store = RunStore.create(tmp_path / "run", {"seed": 0})
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        g = Genome.from_tensors({"x.lora_A.weight": torch.randn(4, 8).to(dtype),
                                 "x.lora_B.weight": torch.randn(8, 4).to(dtype)}, "lora")
        digest = store.weights.save(g)
        back = store.weights.load(digest)
        assert back.layout == g.layout
        assert torch.equal(back.flat.view(torch.uint8) if False else back.flat, g.flat)
        assert back.flat.view(torch.int16 if dtype != torch.float32 else torch.int32).tolist() == \
            g.flat.view(torch.int16 if dtype != torch.float32 else torch.int32).tolist()
        assert back.content_hash() == digest
    store.close()


def test_corrupted_weight_file_is_reported_by_name(tmp_path):
    store = RunStore.create(tmp_path / "run", {})
    digest = store.weights.save(Genome.from_tensors({"w": torch.arange(64.0)}, "delta"))
    path = store.weights.path(digest)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(EvoMergeError, match=f"corrupted.*{digest}"):
        store.weights.load(digest)
    path.write_bytes(bytes(data[:40]))
    with pytest.raises(EvoMergeError, match="unreadable"):
        store.weights.load(digest)
    store.close()


def test_lineage_round_trip_and_ancestors(tmp_path):
    store = RunStore.create(tmp_path / "run", {})
    db = store.lineage
    db.add(Individual(id=0, generation=0, operator="member", weights="a", name="m0", fitness=0.5))
    db.add(Individual(id=1, generation=0, operator="member", weights="b", name="m1", fitness=0.6))
    db.add(Individual(id=2, generation=1, operator="crossover", weights="c", parents=[0, 1], method="ties",
                      coefficients=[0.4, 0.6], params={"density": 0.7}, seed=123, fitness=0.7,
                      task_scores={"t": 0.7}))
    db.add(Individual(id=3, generation=2, operator="mutation", weights="d", parents=[2], seed=5, fitness=0.71))
    ind = db.get(2)
    assert ind.parents == [0, 1] and ind.coefficients == [0.4, 0.6] and ind.params == {"density": 0.7}
    assert ind.seed == 123 and ind.task_scores == {"t": 0.7}
    assert [a.id for a in db.ancestors(3)] == [3, 2, 0, 1]
    db.set_test(3, 0.65, {"t": 0.65})
    assert db.get(3).test_score == 0.65
    store.close()
    reopened = RunStore.open(tmp_path / "run")
    assert [i.id for i in reopened.lineage.all()] == [0, 1, 2, 3]
    reopened.close()


def test_existing_run_directory_is_refused(tmp_path):
    RunStore.create(tmp_path / "run", {}).close()
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    with pytest.raises(EvoMergeError, match="already exists"):
        RunStore.create(tmp_path / "run", {})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


def test_open_rejects_non_run_and_truncated_db(tmp_path):
    with pytest.raises(EvoMergeError, match="not a run directory"):
        RunStore.open(tmp_path)
    RunStore.create(tmp_path / "run", {}).close()
    db = tmp_path / "run" / "lineage.sqlite"
    db.write_bytes(db.read_bytes()[:100])
    with pytest.raises(EvoMergeError, match="unreadable"):
        RunStore.open(tmp_path / "run")
