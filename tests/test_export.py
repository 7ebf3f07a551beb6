"""`evo-merge export`: one individual of a run as a loadable model / PEFT adapter directory."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import factories
from evo_merge.config import load_run_config
from evo_merge.errors import EvoMergeError
from evo_merge.export import ExportResult, export_individual
from evo_merge.merge import merge_genomes
from evo_merge.population import load_population
from evo_merge.runner import execute
from evo_merge.store import Individual, RunStore

EVO = {"generations": 1, "population_size": 4, "mutation": {"rate": 1.0},
       "crossover": {"rate": 1.0, "slots": 1, "methods": [{"method": "ties", "params": {"density": 0.7}}]}}


def _run(pop: Path, root: Path, **overrides) -> Path:
    task = factories.write_task(root)
    return execute(load_run_config(factories.write_run_config(root, pop, task, **EVO), overrides)).run_dir


@pytest.fixture(scope="module")
def full_run(tiny_full, tmp_path_factory) -> Path:
    return _run(tiny_full, tmp_path_factory.mktemp("export_full"))


@pytest.fixture(scope="module", params=["exact", "factors"])
def lora_run(tiny_lora, tmp_path_factory, request) -> Path:
    return _run(tiny_lora, tmp_path_factory.mktemp("export_lora"), **{"lora.mode": request.param})


def _rows(run_dir: Path) -> tuple[list[Individual], list[dict]]:
    store = RunStore.open(run_dir)
    try:
        return store.lineage.all(), store.lineage.results()
    finally:
        store.close()


def _genome(run_dir: Path, ind_id: int):
    store = RunStore.open(run_dir)
    try:
        return store.weights.load(store.lineage.get(ind_id).weights)
    finally:
        store.close()


def _first(run_dir: Path, operator: str) -> Individual:
    return next(i for i in _rows(run_dir)[0] if i.operator == operator)


def _generates(model, out_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out_dir)
    ids = tok("1+2=", return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 3


def _assert_base_plus_delta(out_dir: Path, base_dir: Path, genome) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out_dir)
    base = load_file(str(base_dir / "model.safetensors"))
    delta = genome.tensors()
    state = model.state_dict()
    assert set(delta) <= set(state)
    for name, t in state.items():
        expected = base[name] + delta[name] if name in delta else base[name]
        assert torch.equal(t, expected), name
    return model


def test_export_best_of_full_run_is_base_plus_delta(full_run, cli, tmp_path):
    out = tmp_path / "best"
    code, stdout, err = cli("export", full_run, out, "--best")
    assert code == 0, err
    assert "wrote Hugging Face model directory" in stdout
    rows, results = _rows(full_run)
    best = next(r for r in results if r["name"] == "evolved best")["detail"]["id"]
    info = json.loads((out / "evo_merge_individual.json").read_text())
    assert info["id"] == best and info["chosen_by"] == "evolved best"
    assert info["run_dir"] == str(full_run.resolve()) and info["fitness"] == rows[best].fitness
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    population = load_population(yaml.safe_load((full_run / "config.yaml").read_text())["population"])
    model = _assert_base_plus_delta(out, population.base_dir, _genome(full_run, best))
    _generates(model, out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".best-")]  # no temporary left


def test_crossover_of_members_gets_a_faithful_mergekit_config(full_run, tmp_path):
    child = _first(full_run, "crossover")
    res = export_individual(full_run, child.id, tmp_path / "x")
    assert isinstance(res, ExportResult) and res.format == "model" and res.note is None
    assert res.mergekit_config == tmp_path / "x" / "mergekit_config.yml"
    cfg = yaml.safe_load(res.mergekit_config.read_text())
    population = load_population(yaml.safe_load((full_run / "config.yaml").read_text())["population"])
    parents = [next(i for i in _rows(full_run)[0] if i.id == p) for p in child.parents]
    assert cfg["merge_method"] == "ties" == child.method
    assert cfg["base_model"] == str(population.base_dir.resolve())
    assert [m["model"] for m in cfg["models"]] == [str(population.member_dirs[p.name].resolve()) for p in parents]
    assert [m["parameters"]["weight"] for m in cfg["models"]] == child.coefficients
    assert all(m["parameters"]["density"] == 0.7 for m in cfg["models"])
    assert cfg["parameters"]["normalize"] is True and cfg["dtype"] == "float32"
    # the YAML's recipe, redone with evo-merge's own ties, gives the individual's weights bit for bit
    by_path = {str(p.resolve()): n for n, p in population.member_dirs.items()}
    members = population.load_genomes()
    redone = merge_genomes(cfg["merge_method"], [members[by_path[m["model"]]] for m in cfg["models"]],
                           [m["parameters"]["weight"] for m in cfg["models"]],
                           params={"density": cfg["models"][0]["parameters"]["density"],
                                   "normalize": cfg["parameters"]["normalize"]})
    genome = _genome(full_run, child.id)
    assert torch.equal(redone.flat, genome.flat)
    _assert_base_plus_delta(tmp_path / "x", population.base_dir, genome)
    # the uniform merge (operator 'merge') is mergekit's linear
    uniform = _first(full_run, "merge")
    res = export_individual(full_run, uniform.id, tmp_path / "u")
    cfg = yaml.safe_load(res.mergekit_config.read_text())
    assert cfg["merge_method"] == "linear" and "base_model" not in cfg
    assert [m["parameters"]["weight"] for m in cfg["models"]] == [1.0, 1.0, 1.0]


def test_evo_merge_merge_accepts_every_exported_mergekit_config(full_run, tmp_path):
    """`evo-merge merge` on an export's own mergekit_config.yml rebuilds the exported weights."""
    from evo_merge.oneshot import merge_from_config

    done = set()
    for ind in _rows(full_run)[0]:
        if ind.operator not in ("crossover", "merge") or ind.method in done:
            continue
        res = export_individual(full_run, ind.id, tmp_path / f"x{ind.id}")
        if res.mergekit_config is None or res.note:  # approximate configs (random masks) are not exact
            continue
        done.add(ind.method)
        merge_from_config(res.mergekit_config, tmp_path / f"redo{ind.id}")
        exported, redone = load_file(tmp_path / f"x{ind.id}" / "model.safetensors"), \
            load_file(tmp_path / f"redo{ind.id}" / "model.safetensors")
        assert exported.keys() == redone.keys()
        for name in exported:
            torch.testing.assert_close(redone[name], exported[name], rtol=0, atol=1e-5)
    assert {"ties", "linear"} <= done


def test_mutant_gets_no_mergekit_config_and_says_why(full_run, tmp_path):
    mutant = _first(full_run, "mutation")
    res = export_individual(full_run, mutant.id, tmp_path / "m")
    assert res.mergekit_config is None and "history includes mutation" in res.note
    assert not (tmp_path / "m" / "mergekit_config.yml").exists()
    info = json.loads((tmp_path / "m" / "evo_merge_individual.json").read_text())
    assert info["operator"] == "mutation" and info["parents"] == mutant.parents and info["seed"] == mutant.seed
    assert info["mergekit_note"] == res.note and [r["id"] for r in info["lineage"]] == [mutant.id, *mutant.parents]


def test_lora_individual_as_peft_adapter_and_merged(lora_run, cli, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    child = _first(lora_run, "crossover")
    genome = _genome(lora_run, child.id)
    population = load_population(yaml.safe_load((lora_run / "config.yaml").read_text())["population"])
    res = export_individual(lora_run, child.id, tmp_path / "a")
    assert res.format == "adapter" and res.mergekit_config is None and "LoRA population" in res.note
    adapter_cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(population.base_dir.resolve())
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(population.base_dir), tmp_path / "a")
    peft.eval()
    tensors = genome.tensors()
    if genome.basis is not None:  # exact LoRA: an adapter of the members' summed rank (3 x 4), scaling 1
        tensors = genome.basis.peft_tensors(tensors)
        assert adapter_cfg["r"] == adapter_cfg["lora_alpha"] == genome.basis.rank == 12
    loras = {n.replace(".default", ""): p for n, p in peft.named_parameters() if "lora_" in n}
    assert set(loras) == set(tensors)
    for name, p in loras.items():
        assert torch.equal(p.data, tensors[name]), name
    _generates(peft, tmp_path / "a")

    code, stdout, err = cli("export", lora_run, tmp_path / "merged", "--id", child.id, "--merge-lora")
    assert code == 0, err
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, peft(ids).logits, rtol=1e-4, atol=1e-5)
    _generates(merged, tmp_path / "merged")


def test_cli_errors_exit_2_with_one_line_and_touch_nothing(full_run, cli, tmp_path):
    def one_line_error(code, err, needle):
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err

    code, _, err = cli("export", full_run, tmp_path / "o", "--id", "999")
    one_line_error(code, err, "no individual 999")
    code, _, err = cli("export", full_run, tmp_path / "o", "--id", "0", "--best")
    one_line_error(code, err, "exactly one of --id")
    code, _, err = cli("export", full_run, tmp_path / "o")
    one_line_error(code, err, "exactly one of --id")
    code, _, err = cli("export", tmp_path / "nope", tmp_path / "o", "--best")
    one_line_error(code, err, "run directory not found")
    assert not (tmp_path / "o").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    code, _, err = cli("export", full_run, tmp_path / "full", "--best")
    one_line_error(code, err, "already exists and is not empty")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_corrupt_weights_or_failed_write_leave_no_output(full_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    # a run writes only the weights its checkpoints need: take an offspring it wrote (a survivor)
    child = next(i for i in _rows(run)[0] if i.operator != "member"
                 and (run / "weights" / f"{i.weights}.safetensors").is_file())
    weights = run / "weights" / f"{child.weights}.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(EvoMergeError, match="weight file"):
        export_individual(run, child.id, tmp_path / "o")
    weights.unlink()  # an offspring's missing file is rebuilt from its recipe; a member's cannot be
    member = _first(run, "member")
    (run / "weights" / f"{member.weights}.safetensors").unlink()
    with pytest.raises(EvoMergeError, match="weight file missing"):
        export_individual(run, member.id, tmp_path / "o")

    from evo_merge.model_host import ModelHost

    def half_then_fail(self, out_dir, **kwargs):
        (Path(out_dir) / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(ModelHost, "export_model", half_then_fail)
    (tmp_path / "o").mkdir()  # an empty OUT is allowed, and must stay as it was
    with pytest.raises(OSError, match="disk full"):
        export_individual(full_run, _first(full_run, "merge").id, tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "run"]
    assert not any((tmp_path / "o").iterdir())
