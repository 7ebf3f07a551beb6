"""`evo-merge merge` on mergekit's YAML: slices, gradients, filters, per-model parameters,
streamed sharded output, and what it refuses. Expected values are computed here by hand."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

Q = "model.layers.{}.self_attn.q_proj.weight"
UP = "model.layers.{}.mlp.up_proj.weight"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A random 4-layer Llama base and three fine-tunes (base + seeded noise), float32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.factories import make_tokenizer

    root = tmp_path_factory.mktemp("yaml_models")
    cfg = LlamaConfig(vocab_size=28, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    paths = {}
    for i, name in enumerate(["base", "a", "b", "c"]):
        if i:
            torch.manual_seed(100 + i)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.05)
        model.save_pretrained(root / name, safe_serialization=True)
        make_tokenizer().save_pretrained(root / name)
        paths[name] = root / name
    return paths


def weights(path):
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def run(cli, tmp_path, cfg, *flags, out="out"):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = cli("merge", tmp_path / "m.yaml", tmp_path / out, *flags)
    return code, err


def test_linear_without_normalize_is_the_plain_weighted_sum(cli, models, tmp_path):
    cfg = {"merge_method": "linear", "models": [{"model": str(models["a"]), "parameters": {"weight": 0.7}},
                                                 {"model": str(models["b"]), "parameters": {"weight": 0.6}}],
           "parameters": {"normalize": False}}
    code, err = run(cli, tmp_path, cfg)
    assert code == 0, err
    a, b, got = weights(models["a"]), weights(models["b"]), weights(tmp_path / "out")
    assert set(got) == set(a)
    for name in a:
        torch.testing.assert_close(got[name], 0.7 * a[name] + 0.6 * b[name], rtol=0, atol=1e-6)


def test_weight_gradient_and_filter_per_layer(cli, models, tmp_path):
    """Model a's weight goes 0 -> 1 over the 4 layers (t = i/3); model b's is 2 on mlp tensors, 1 elsewhere."""
    cfg = {"merge_method": "task_arithmetic", "base_model": str(models["base"]),
           "models": [{"model": str(models["a"]), "parameters": {"weight": [0.0, 1.0]}},
                      {"model": str(models["b"]), "parameters": {"weight": [{"filter": "mlp", "value": 2.0},
                                                                            {"value": 1.0}]}}]}
    code, err = run(cli, tmp_path, cfg)
    assert code == 0, err
    base, a, b, got = (weights(p) for p in (models["base"], models["a"], models["b"], tmp_path / "out"))
    for i in range(4):
        for name, wb in ((Q.format(i), 1.0), (UP.format(i), 2.0)):
            expected = base[name] + (i / 3) * (a[name] - base[name]) + wb * (b[name] - base[name])
            torch.testing.assert_close(got[name], expected, rtol=0, atol=1e-6)
    emb = "model.embed_tokens.weight"  # outside the layers: t = 0, so model a's weight is 0
    torch.testing.assert_close(got[emb], base[emb] + (b[emb] - base[emb]), rtol=0, atol=1e-6)


def test_slerp_with_the_base_among_the_models_interpolates_the_weights(cli, models, tmp_path):
    cfg = {"merge_method": "slerp", "base_model": str(models["a"]),
           "models": [{"model": str(models["a"])}, {"model": str(models["b"])}], "parameters": {"t": 0.5}}
    code, err = run(cli, tmp_path, cfg)
    assert code == 0, err
    a, b, got = weights(models["a"]), weights(models["b"]), weights(tmp_path / "out")
    name = Q.format(1)
    x, y = a[name].double(), b[name].double()
    omega = torch.arccos((x / x.norm() * y / y.norm()).sum())
    expected = (torch.sin(omega / 2) / torch.sin(omega)) * (x + y)
    torch.testing.assert_close(got[name].double(), expected, rtol=0, atol=1e-5)


def test_passthrough_slices_stack_layers(cli, models, tmp_path):
    """Layers 0-2 of a then 1-3 of b: a 6-layer model that transformers loads."""
    from transformers import AutoModelForCausalLM

    cfg = {"merge_method": "passthrough", "dtype": "float32",
           "slices": [{"sources": [{"model": str(models["a"]), "layer_range": [0, 3]}]},
                      {"sources": [{"model": str(models["b"]), "layer_range": [1, 4]}]}]}
    code, err = run(cli, tmp_path, cfg)
    assert code == 0, err
    a, b, got = weights(models["a"]), weights(models["b"]), weights(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 6
    for out_i, (src, i) in enumerate([(a, 0), (a, 1), (a, 2), (b, 1), (b, 2), (b, 3)]):
        assert torch.equal(got[Q.format(out_i)], src[Q.format(i)])
    assert torch.equal(got["model.embed_tokens.weight"], a["model.embed_tokens.weight"])
    assert torch.equal(got["lm_head.weight"], b["lm_head.weight"])
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out").config.num_hidden_layers == 6


def test_sharded_output_equals_one_shard_and_loads(cli, models, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = {"merge_method": "ties", "base_model": str(models["base"]),
           "models": [{"model": str(models[m]), "parameters": {"weight": w, "density": d}}
                      for m, w, d in (("a", 0.5, 0.3), ("b", 0.8, 0.6), ("c", 0.3, 0.9))]}
    assert run(cli, tmp_path, cfg)[0] == 0
    code, err = run(cli, tmp_path, cfg, "--out-shard-size", "4K", out="sharded")
    assert code == 0, err
    files = sorted((tmp_path / "sharded").glob("*.safetensors"))
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(files) > 3 and set(index["weight_map"].values()) == {f.name for f in files}
    one, many = weights(tmp_path / "out"), weights(tmp_path / "sharded")
    assert one.keys() == many.keys() and all(torch.equal(one[k], many[k]) for k in one)
    AutoModelForCausalLM.from_pretrained(tmp_path / "sharded")


def test_out_dtype_and_tokenizer_source(cli, models, tmp_path):
    cfg = {"merge_method": "linear", "out_dtype": "bfloat16", "tokenizer_source": str(models["b"]),
           "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
           "models": [{"model": str(models["a"]), "parameters": {"weight": 1.0}},
                      {"model": str(models["b"]), "parameters": {"weight": 1.0}}]}
    code, err = run(cli, tmp_path, cfg)
    assert code == 0, err
    got = weights(tmp_path / "out")
    assert all(t.dtype == torch.bfloat16 for t in got.values())
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"
    tok = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert tok["chat_template"].startswith("{% for m in messages %}")


@pytest.mark.parametrize("change, message", [
    ({"modules": {"text": {}}}, "'modules'"),
    ({"tokenizer": {"source": "union"}}, "'tokenizer'"),
    ({"tokenizer_source": "union"}, "tokenizer_source 'union'"),
    ({"chat_template": "chatml"}, "named or 'auto' templates"),
    ({"parameters": {"densty": 0.5}}, "parameter 'densty' is not a parameter of merge method 'ties'"),
    ({"parameters": {"density": 1.5}}, "density"),
    ({"base_model": None}, "needs a base_model"),
    ({"mergekit_typo": 1}, "mergekit_typo"),
])
def test_refusals_name_the_key(cli, models, tmp_path, change, message):
    cfg = {"merge_method": "ties", "base_model": str(models["base"]),
           "models": [{"model": str(models["a"]), "parameters": {"weight": 1.0}}]}
    cfg.update(change)
    code, err = run(cli, tmp_path, cfg)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out-*"))


def test_mergekit_example_shapes_are_accepted(cli, models, tmp_path):
    """The structures of mergekit's examples/ (ties with density/weight gradients and filters,
    gradient slerp over slices, linear without base, passthrough layer stacking)."""
    a, b, c, base = (str(models[k]) for k in ("a", "b", "c", "base"))
    examples = [
        {"models": [{"model": a, "parameters": {"density": [1, 0.7, 0.1], "weight": 1.0}},
                    {"model": b, "parameters": {"density": 0.5, "weight": [0, 0.3, 0.7, 1]}},
                    {"model": c, "parameters": {"density": 0.33, "weight": [{"filter": "mlp", "value": 0.5},
                                                                            {"value": 0}]}}],
         "merge_method": "ties", "base_model": base, "parameters": {"normalize": True, "int8_mask": True},
         "dtype": "float16"},
        {"slices": [{"sources": [{"model": a, "layer_range": [0, 4]}, {"model": b, "layer_range": [0, 4]}]}],
         "merge_method": "slerp", "base_model": a,
         "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                              {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]},
         "dtype": "float16"},
        {"models": [{"model": a, "parameters": {"weight": 1.0}}, {"model": b, "parameters": {"weight": 0.3}},
                    {"model": c, "parameters": {"weight": 0.5}}], "merge_method": "linear", "dtype": "float16"},
        {"slices": [{"sources": [{"model": a, "layer_range": [0, 3]}]},
                    {"sources": [{"model": b, "layer_range": [2, 4]}]}],
         "merge_method": "passthrough", "dtype": "float16"},
    ]
    for i, cfg in enumerate(examples):
        code, err = run(cli, tmp_path, cfg, out=f"out{i}")
        assert code == 0, (cfg["merge_method"], err)
        assert all(t.dtype == torch.float16 for t in weights(tmp_path / f"out{i}").values())


def test_cuda_without_a_gpu_and_lora_syntax_are_refused_in_one_line(cli, models, tmp_path):
    cfg = {"merge_method": "linear", "models": [{"model": str(models["a"])}, {"model": str(models["b"])}]}
    if not torch.cuda.is_available():
        code, err = run(cli, tmp_path, cfg, "--device", "cuda")
        assert code == 2 and "--device cuda: no CUDA device" in err
    cfg["models"][1]["model"] = f"{models['b']}+some/lora"
    code, err = run(cli, tmp_path, cfg)
    assert code == 2 and "'model+lora' syntax is not supported" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_relative_paths_resolve_from_the_current_directory_first(cli, models, tmp_path, monkeypatch):
    monkeypatch.chdir(models["a"].parent)
    cfg = {"merge_method": "linear", "models": [{"model": "a"}, {"model": "b"}]}
    code, err = run(cli, tmp_path, cfg)
    assert code == 0, err
    a, b, got = weights(models["a"]), weights(models["b"]), weights(tmp_path / "out")
    torch.testing.assert_close(got[Q.format(2)], (a[Q.format(2)] + b[Q.format(2)]) / 2, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    """A base of zeros and three 'fine-tunes' whose values are multiples of 0.01: many equal
    magnitudes at every trim threshold (raw safetensors files and a config.json)."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("tied")
    g = torch.Generator().manual_seed(0)
    shapes = {f"model.layers.{i}.mlp.up_proj.weight": (48, 40) for i in range(2)}
    shapes["model.embed_tokens.weight"] = (30, 40)
    paths = {}
    for i, name in enumerate(["base", "a", "b", "c"]):
        d = root / name
        d.mkdir()
        save_file({k: (torch.randint(-4, 5, s, generator=g).float() * 0.01 if i else torch.zeros(s))
                   for k, s in shapes.items()}, str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "model_type": "llama"}))
        paths[name] = d
    return paths


def _mergekit_ties(base, deltas, weights, density):
    """mergekit 0.1.5's TIES, written out: argsort top-k per task vector, weighted sign election."""
    ds = []
    for d in deltas:
        k = int(density * d.numel())
        mask = torch.zeros(d.numel())
        mask[torch.argsort(d.abs().reshape(-1), descending=True)[:k]] = 1
        ds.append(d * mask.view(d.shape))
    w = torch.tensor(weights).view(-1, *[1] * base.dim())
    st = torch.stack(ds) * w
    agree = st.sign() == ((st.sum(0) >= 0).float() * 2 - 1)
    div = (w * agree).sum(0)
    div[div == 0] = 1
    return base + (st * agree).sum(0) / div


def test_tie_order_mergekit_reproduces_mergekits_choice_among_tied_magnitudes(cli, tied, tmp_path):
    cfg = {"merge_method": "ties", "base_model": str(tied["base"]), "tie_order": "mergekit",
           "models": [{"model": str(tied[m]), "parameters": {"weight": w}}
                      for m, w in (("a", .6), ("b", .3), ("c", .4))],
           "parameters": {"density": 0.5}}
    assert run(cli, tmp_path, cfg, out="mk")[0] == 0
    cfg["tie_order"] = "index"
    assert run(cli, tmp_path, cfg, out="ix")[0] == 0
    got_mk, got_ix = weights(tmp_path / "mk"), weights(tmp_path / "ix")
    inputs = [weights(tied[m]) for m in ("base", "a", "b", "c")]
    for name in got_mk:
        expected = _mergekit_ties(inputs[0][name], [x[name] for x in inputs[1:]], [.6, .3, .4], 0.5)
        torch.testing.assert_close(got_mk[name], expected, rtol=0, atol=1e-6)
        assert got_ix[name].shape == expected.shape  # (the default order may pick other tied values)


def test_output_gets_the_usual_permissions_and_bad_model_files_are_one_line(cli, models, tmp_path):
    import os
    import shutil

    cfg = {"merge_method": "linear", "models": [{"model": str(models["a"])}, {"model": str(models["b"])}]}
    assert run(cli, tmp_path, cfg)[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask
    broken = tmp_path / "broken"
    shutil.copytree(models["b"], broken)
    (broken / "config.json").write_text("{not json")
    cfg["models"][1]["model"] = str(broken)
    code, err = run(cli, tmp_path, {**cfg, "base_model": str(broken), "merge_method": "task_arithmetic"},
                    out="o2")
    assert code == 2 and "cannot read" in err and "config.json" in err and len(err.strip().splitlines()) == 1


def test_a_slice_base_outside_its_sources_is_refused(cli, models, tmp_path):
    cfg = {"merge_method": "ties", "base_model": str(models["base"]),
           "slices": [{"sources": [{"model": str(models["a"]), "layer_range": [0, 2]},
                                   {"model": str(models["b"]), "layer_range": [2, 4]}]}]}
    code, err = run(cli, tmp_path, cfg)
    assert code == 2 and "must be one of the slice's sources" in err and not (tmp_path / "out").exists()

