"""The mergekit config an evolved individual exports: its forms, and why there is none."""

from pathlib import Path

import yaml

from evo_merge.export import mergekit_config
from evo_merge.population import MemberSpec, Population, PopulationSpec
from evo_merge.store import Individual


def _pop(kind: str = "full") -> Population:
    spec = PopulationSpec(name="p", kind=kind, base_model="/models/base",
                          members=[MemberSpec(name="a", path="/models/a"), MemberSpec(name="b", path="/models/b")])
    return Population(spec, Path("/models/base"), {"a": Path("/models/a"), "b": Path("/models/b")})


def _ind(i: int, operator: str, parents=(), method=None, coefficients=None, params=None, name=None):
    return Individual(id=i, generation=0 if operator == "member" else 1, operator=operator, weights="h",
                      parents=list(parents), name=name, method=method, coefficients=coefficients, params=params)


A, B = _ind(0, "member", name="a"), _ind(1, "member", name="b")


def test_mergekit_config_forms_and_refusals():
    text, note = mergekit_config(_ind(2, "crossover", [1, 0], "slerp", [0.25, 0.75], {"t": 0.75}), [B, A],
                                 _pop(), "bfloat16")
    cfg = yaml.safe_load(text)
    # evo-merge's slerp interpolates task vectors: mergekit's nuslerp over the base, t = w1 / (w0 + w1)
    assert cfg == {"merge_method": "nuslerp", "base_model": "/models/base",
                   "models": [{"model": "/models/b", "parameters": {"weight": 0.25}},
                              {"model": "/models/a", "parameters": {"weight": 0.75}}],
                   "dtype": "bfloat16"}
    assert "approximate" in note and text.startswith("# ")
    # nearswap: parent 0 plays mergekit's base, exactly
    text, note = mergekit_config(_ind(2, "crossover", [1, 0], "nearswap", [0.5, 0.5], {"t": 0.01}), [B, A],
                                 _pop(), "float32")
    assert note is None and yaml.safe_load(text) == {
        "merge_method": "nearswap", "base_model": "/models/b", "models": [{"model": "/models/b"}, {"model": "/models/a"}],
        "parameters": {"t": 0.01}, "dtype": "float32"}
    # rescale: inverse_density has no mergekit counterpart: L1 rescale, said in the note
    text, note = mergekit_config(_ind(2, "crossover", [0, 1], "dare_ties", [0.5, 0.5],
                                      {"density": [0.6, 0.8], "normalize": True, "rescale": "inverse_density"}),
                                 [A, B], _pop(), "float32")
    cfg = yaml.safe_load(text)
    assert cfg["parameters"] == {"normalize": True, "rescale": True} and "inverse_density" in note
    assert [m["parameters"]["density"] for m in cfg["models"]] == [0.6, 0.8]
    # karcher averages task vectors here, model weights in mergekit: no config
    assert mergekit_config(_ind(2, "crossover", [0, 1], "karcher", [0.5, 0.5]), [A, B], _pop(), "float32")[0] is None
    # unnormalized linear is task arithmetic over the base; lambda goes in the global parameters
    cfg = yaml.safe_load(mergekit_config(_ind(2, "crossover", [0, 1], "linear", [0.5, 0.8], {"normalize": False}),
                                         [A, B], _pop(), "float32")[0])
    assert cfg["merge_method"] == "task_arithmetic" and cfg["base_model"] == "/models/base"
    assert cfg["parameters"] == {"normalize": False}
    cfg = yaml.safe_load(mergekit_config(
        _ind(2, "composition", [0, 1], "dare_ties", [0.3, 0.9],
             {"density": 0.4, "lambda": 1.5, "groups": {"granularity": "parent"}, "group_labels": ["all"]}),
        [A, B], _pop(), "float32")[0])
    assert cfg["parameters"] == {"normalize": False, "lambda": 1.5, "rescale": True}  # mergekit's defaults
    assert cfg["models"][1] == {"model": "/models/b", "parameters": {"weight": 0.9, "density": 0.4}}

    def refused(ind, parents, pop=None):
        text, note = mergekit_config(ind, parents, pop or _pop(), "float32")
        assert text is None
        return note

    assert "LoRA population" in refused(_ind(2, "crossover", [0, 1], "ties", [1, 1]), [A, B], _pop("lora"))
    assert "history includes succession" in refused(_ind(2, "succession", [0, 1, 0, 1]), [A, B, A, B])
    mutant = _ind(2, "mutation", [0])
    assert "parents are not members (history includes mutation)" in refused(
        _ind(3, "crossover", [2, 1], "ties", [1, 1]), [mutant, B])
    assert "per-layers coefficients" in refused(
        _ind(2, "composition", [0, 1], "task_arithmetic", [1, 1, 1, 1],
             {"groups": {"granularity": "layers", "layer_groups": 2}}), [A, B])
    assert "member 'a' itself" in refused(A, [])
