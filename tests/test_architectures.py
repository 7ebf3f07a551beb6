"""The whole path on tiny random-init Llama, Qwen2 and Gemma2 models, full and LoRA, float32
and bfloat16: load, evolve, store, export, and load the export with transformers or peft."""

from __future__ import annotations

import pytest
import torch

import factories
from evo_merge.config import load_run_config
from evo_merge.export import export_individual
from evo_merge.runner import execute


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", ["full", "lora"])
@pytest.mark.parametrize("arch", factories.ARCHS)
def test_evolve_and_export_each_architecture(tmp_path, arch, kind, dtype):
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    population = factories.write_population(tmp_path / "pop", kind, arch, torch_dtype)
    task = factories.write_task(tmp_path)
    cfg_path = factories.write_run_config(tmp_path, population, task, generations=2)
    cfg = load_run_config(cfg_path, {"eval.dtype": dtype, "pool.backend": "local"})
    outcome = execute(cfg)
    rows = {r["name"]: r for r in outcome.rows}
    assert rows["evolved best"]["fitness"] >= rows["best initial member"]["fitness"]
    res = export_individual(outcome.run_dir, None, tmp_path / "export", merge_lora=(kind == "lora"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    assert model.config.model_type == arch and model.dtype == torch_dtype
    ids = torch.tensor([[1, 5, 6, 7]])
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape[1] == 7 and res.individual.id == rows["evolved best"]["ids"][0]


def test_chat_template_wraps_the_prompt_and_a_missing_template_is_an_error():
    from evo_merge.errors import EvoMergeError
    from evo_merge.fitness.metrics import make_metric
    from evo_merge.fitness.prompts import render_prompt
    from evo_merge.fitness.tasks import TaskSpec

    tok = factories.make_tokenizer()
    spec = TaskSpec(name="t", dataset={"path": "x.jsonl"}, choices_field="choices", chat_template=True)
    row = {"question": "12=", "choices": ["3", "4"], "answer": "3"}
    with pytest.raises(EvoMergeError, match="has no chat template"):
        render_prompt(spec, row, tok)
    tok.chat_template = ("{% for m in messages %}<s>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}:{% endif %}")
    assert render_prompt(spec, row, tok) == ("<s>12=:", False)
    metric = make_metric(spec, [row], tok, torch.device("cpu"), 4)
    ids = metric.scorer.batchings[False][0].input_ids[0].tolist()
    assert tok.decode([i for i in ids if i != tok.pad_token_id]).startswith("<s>12=:")
    assert ids.count(tok.bos_token_id) == 1  # the template's <s> only, none added on top
