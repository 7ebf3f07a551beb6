"""The demo population builder (quick mode) and the demo tasks' committed data."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "populations"))

import build_demo  # noqa: E402
import write_demo_tasks  # noqa: E402
from skills import SKILLS  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "pop"
    build_demo.build(out, seed=0, quick=True)
    return out


def test_same_seed_same_weights(built, tmp_path):
    again = tmp_path / "again"
    build_demo.build(again, seed=0, quick=True)
    first = json.loads((built / "manifest.json").read_text())
    assert first == json.loads((again / "manifest.json").read_text())
    assert set(first["skills"]) == set(SKILLS)
    assert len(first["sha256"]) == 1 + 2 * len(SKILLS)


def test_builder_leaves_torch_settings_alone(tmp_path):
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    build_demo.build(tmp_path / "pop", seed=1, quick=True)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_models_load_and_tokenizer_round_trips(built):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built / "base")
    question = "add 34="
    ids = tok(question)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(question) + 1
    assert tok.decode(ids, skip_special_tokens=True) == question
    assert tok(["a", "abc"], padding=True)["input_ids"][0][-1] == tok.pad_token_id

    base = AutoModelForCausalLM.from_pretrained(built / "base")
    assert base.config.model_type == "llama"
    full = AutoModelForCausalLM.from_pretrained(built / "full" / "add")
    lora = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(built / "base"), built / "lora" / "add")
    batch = torch.tensor([ids])
    for model in (base, full, lora):
        assert model(input_ids=batch).logits.shape == (1, len(ids), len(tok))


def test_committed_task_data_regenerates_identically(tmp_path):
    for path in write_demo_tasks.write_all(tmp_path):
        committed = ROOT / "fitness" / "data" / path.name
        assert path.read_bytes() == committed.read_bytes(), f"{committed} is stale: run write_demo_tasks.py"


@pytest.mark.parametrize("spec", sorted((ROOT / "fitness").glob("demo-*.yaml")), ids=lambda p: p.stem)
def test_demo_task_specs_load(spec):
    from evo_merge.fitness.tasks import load_task

    task = load_task(spec)
    assert len(task.fitness) == 200 and len(task.test) == 200
    for row in task.fitness:
        assert "choices" not in row or row["answer"] in row["choices"]


def test_builder_works_with_gradients_disabled_by_the_caller(tmp_path):
    with torch.no_grad():
        build_demo.build(tmp_path / "pop", seed=0, quick=True)
    assert (tmp_path / "pop" / "manifest.json").is_file()
