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
