"""`evo-merge merge`: a one-shot merge into a Hugging Face model directory."""

import pytest
import torch
import yaml
from safetensors.torch import load_file


def members_of(pop_path):
    spec = yaml.safe_load(pop_path.read_text())
    return spec["base_model"], [m["path"] for m in spec["members"]]


def test_merge_full_models_writes_loadable_hf_dir(cli, tiny_full, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, members = members_of(tiny_full)
    cfg = {"merge_method": "task_arithmetic", "base_model": base,
           "models": [{"model": members[0], "parameters": {"weight": 0.3}},
                      {"model": members[1], "parameters": {"weight": 0.5}}],
           "parameters": {"lambda": 1.0}}
    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(cfg))
    code, out, err = cli("merge", tmp_path / "merge.yaml", tmp_path / "out")
    assert code == 0, err
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    AutoTokenizer.from_pretrained(tmp_path / "out")
    b, m0, m1 = (load_file(f"{p}/model.safetensors") for p in (base, *members[:2]))
    name = "model.layers.0.self_attn.q_proj.weight"
    expected = b[name] + 0.3 * (m0[name] - b[name]) + 0.5 * (m1[name] - b[name])
    torch.testing.assert_close(dict(model.named_parameters())[name].data, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("lora_mode", ["exact", "factors"])
def test_merge_lora_adapters_into_base(cli, tiny_lora, tmp_path, lora_mode):
    from transformers import AutoModelForCausalLM

    base, members = members_of(tiny_lora)
    cfg = {"merge_method": "linear", "base_model": base, "models": [{"model": m} for m in members],
           "lora_mode": lora_mode}
    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(cfg))
    code, out, err = cli("merge", tmp_path / "merge.yaml", tmp_path / "out")
    assert code == 0, err
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    b = load_file(f"{base}/model.safetensors")
    loras = [load_file(f"{m}/adapter_model.safetensors") for m in members]
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    if lora_mode == "exact":  # the mean of the members' updates, exactly
        update = sum((8 / 4) * l[f"{prefix}.lora_B.weight"] @ l[f"{prefix}.lora_A.weight"] for l in loras) / 3
    else:  # GENOME's and LoraHub's way: the mean A times the mean B
        A = sum(l[f"{prefix}.lora_A.weight"] for l in loras) / 3
        B = sum(l[f"{prefix}.lora_B.weight"] for l in loras) / 3
        update = (8 / 4) * B @ A  # alpha / r = 2
    expected = b["model.layers.0.self_attn.q_proj.weight"] + update
    got = dict(model.named_parameters())["model.layers.0.self_attn.q_proj.weight"].data
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_merge_errors(cli, tiny_full, tmp_path):
    base, members = members_of(tiny_full)
    bad = {"merge_method": "nope", "base_model": base, "models": [{"model": members[0]}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(bad))
    code, _, err = cli("merge", tmp_path / "m.yaml", tmp_path / "out")
    assert code == 2 and "unknown merge method 'nope'" in err and not (tmp_path / "out").exists()
    bad.update(merge_method="ties", models=[{"model": str(tmp_path / "missing")}])
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(bad))
    code, _, err = cli("merge", tmp_path / "m.yaml", tmp_path / "out")
    assert code == 2 and "not found" in err
