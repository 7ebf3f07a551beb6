"""What the docs and error messages say about configs is true: `evo-merge config --defaults`
prints every field with its real default (and README shows exactly that), an unknown key names
the nearest known one, and a bad flag value names the flag."""

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import factories
from evo_merge.config import RunConfig, load_run_config
from evo_merge.errors import EvoMergeError

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- defaults:begin -->", "<!-- defaults:end -->"


def _defaults(cli) -> str:
    code, out, err = cli("config", "--defaults")
    assert code == 0, err
    return out


def _paths(model: type[BaseModel], value: BaseModel | None = None, prefix: str = "") -> list[str]:
    """Every field's dotted path, into nested sections (those whose default is a model)."""
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        sub = getattr(value, name, None) if value is not None else None
        if isinstance(sub, BaseModel):
            out += _paths(type(sub), sub, f"{prefix}{name}.")
    return out


def test_defaults_show_every_field_with_its_real_default(cli):
    text = _defaults(cli)
    data = yaml.safe_load(text)
    for path in _paths(RunConfig, RunConfig.model_construct()):
        node = data
        for key in path.split("."):
            assert isinstance(node, dict) and key in node, f"{path} missing from `evo-merge config --defaults`"
            node = node[key]
    assert data["population"] is None and data["tasks"] is None  # required: no default
    data.update(population="p.yaml", tasks=[{"spec": "t.yaml"}])
    shown = RunConfig.model_validate(data)
    assert shown.model_dump() == RunConfig(population="p.yaml", tasks=[{"spec": "t.yaml"}]).model_dump()
    assert all(len(line) <= 100 for line in text.splitlines())


def test_config_prints_a_config_with_its_defaults_filled_in(cli, tmp_path):
    cfg = factories.write_run_config(tmp_path, tmp_path / "pop.yaml", tmp_path / "task.yaml", generations=7)
    code, out, err = cli("config", cfg)
    assert code == 0, err
    data = yaml.safe_load(out)
    assert data["evolution"]["generations"] == 7 and data["evolution"]["stall"]["patience"] == 3
    assert RunConfig.model_validate(data) == load_run_config(cfg)
    code, _, err = cli("config")
    assert code == 2 and "exactly one of CONFIG and --defaults" in err


def test_readme_block_equals_the_command(cli):
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme, f"README.md has no {BEGIN} ... {END} block"
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block.startswith("```yaml\n") and block.endswith("\n```"), "the block is one ```yaml fence"
    assert block[len("```yaml\n"):-len("\n```")] + "\n" == _defaults(cli), (
        "README's defaults block is stale: paste the output of `evo-merge config --defaults`")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["evolution"].update(generatons=3), "evolution: unknown key 'generatons' (did you mean 'generations'?)"),
    (lambda d: d.update(sede=1), "unknown key 'sede' (did you mean 'seed'?)"),
    (lambda d: d["tasks"][0].update(wieght=2.0), "tasks.0: unknown key 'wieght' (did you mean 'weight'?)"),
    (lambda d: d["evolution"].update(crossover={"methods": [{"method": "ties", "parms": {}}]}),
     "evolution.crossover.methods.0: unknown key 'parms' (did you mean 'params'?)"),
    (lambda d: d["evolution"].update(search={"evry": 2}), "evolution.search: unknown key 'evry' (did you mean 'every'?)"),
    (lambda d: d.update(zzzz=1), "unknown key 'zzzz' (known: seed, out, population"),
])
def test_an_unknown_key_names_the_nearest_known_one(edit, message, tmp_path, cli):
    cfg = factories.write_run_config(tmp_path, tmp_path / "pop.yaml", tmp_path / "task.yaml")
    data = yaml.safe_load(cfg.read_text())
    edit(data)
    cfg.write_text(yaml.safe_dump(data))
    with pytest.raises(EvoMergeError) as exc:
        load_run_config(cfg)
    assert message in str(exc.value) and str(exc.value).startswith(str(cfg))
    code, _, err = cli("run", cfg)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_unknown_keys_in_task_and_population_specs_and_parameters(tmp_path):
    from evo_merge.fitness.tasks import load_task
    from evo_merge.merge.registry import MERGE_METHODS
    from evo_merge.population import load_population

    task = factories.write_task(tmp_path)
    task.write_text(task.read_text().replace("prompt:", "promt:"))
    with pytest.raises(EvoMergeError, match=r"unknown key 'promt' \(did you mean 'prompt'\?\)"):
        load_task(task)
    pop = tmp_path / "pop.yaml"
    pop.write_text(yaml.safe_dump({"name": "p", "kind": "full", "base_model": "b", "memebers": []}))
    with pytest.raises(EvoMergeError, match=r"unknown key 'memebers' \(did you mean 'members'\?\)"):
        load_population(pop)
    with pytest.raises(EvoMergeError, match=r"unknown parameter 'densty' \(did you mean 'density'\? known: "):
        MERGE_METHODS.entry("ties").validate({"densty": 0.5}, "merge method ties")


@pytest.mark.parametrize("args, message", [
    (["run", "--generations", "-3"], "--generations: Input should be greater than or equal to 0 (got -3)"),
    (["run", "--population-size", "1"], "--population-size: Input should be greater than or equal to 2 (got 1)"),
    (["run", "--mode", "sideways"], "--mode: Input should be 'generational' or 'async' (got 'sideways')"),
    (["run", "--seed", "-1"], "--seed: Input should be greater than or equal to 0 (got -1)"),
    (["search", "--budget", "0"], "--budget: Input should be greater than or equal to 1 (got 0)"),
    (["search", "--objective", "speed"], "--objective: Input should be 'fitness' or 'loss' (got 'speed')"),
])
def test_a_bad_flag_value_names_the_flag_not_the_config(args, message, tmp_path, cli):
    cfg = factories.write_run_config(tmp_path, tmp_path / "pop.yaml", tmp_path / "task.yaml")
    code, _, err = cli(args[0], cfg, *args[1:])
    assert code == 2 and err.strip() == f"error: {message}", err
    assert str(cfg) not in err
