import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import factories  # noqa: E402


@pytest.fixture(scope="session")
def tiny_full(tmp_path_factory) -> Path:
    """A random-init tiny Llama base with 3 full-weight members."""
    root = tmp_path_factory.mktemp("tiny_full")
    return factories.write_population(root, "full")


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory) -> Path:
    """A random-init tiny Llama base with 3 LoRA adapter members."""
    root = tmp_path_factory.mktemp("tiny_lora")
    return factories.write_population(root, "lora")


@pytest.fixture()
def tiny_task(tmp_path) -> Path:
    return factories.write_task(tmp_path)


@pytest.fixture()
def cli(capsys):
    """Run the evo-merge CLI in process; returns (exit code, stdout, stderr)."""
    from evo_merge.cli.app import main

    def run(*args: str):
        old = sys.argv
        sys.argv = ["evo-merge", *map(str, args)]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        finally:
            sys.argv = old
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory, tiny_full):
    """A finished run that no failing command may change: (run dir, config, task spec)."""
    from evo_merge.config import load_run_config
    from evo_merge.runner import execute

    root = tmp_path_factory.mktemp("existing")
    task = factories.write_task(root)
    cfg = factories.write_run_config(root, tiny_full, task, generations=1)
    execute(load_run_config(cfg))
    return root / "run", cfg, task
