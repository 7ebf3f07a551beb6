"""The ``evo-merge`` command line: the typer app with every command, and the entry point.

Imports run one way: this module imports the command modules, which import only
``cli.output`` and the library. User errors print one line and exit with code 2.
"""

from __future__ import annotations

import os
import sys

import typer

from evo_merge.cli import compare, evaluate, manage, merge, readers, run
from evo_merge.cli.output import err_console
from evo_merge.errors import EvoMergeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evolve populations of LLMs by weight merging, mutation, selection and succession.")

for command in (run.run, run.resume, manage.replay, manage.gc, run.search, compare.compare, readers.candidates,
                readers.status, merge.merge, manage.export, readers.lineage, readers.plot):
    app.command()(command)
app.command("eval")(evaluate.eval_)


def main() -> None:
    """Entry point: one line and exit 2 on user errors; a traceback only with EVO_MERGE_DEBUG=1."""
    debug = os.environ.get("EVO_MERGE_DEBUG") == "1"
    try:
        app()  # click's standalone mode: usage errors print their message and exit 2
    except EvoMergeError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: never a traceback for users
        if debug:
            raise
        err_console.print(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                          f"(set EVO_MERGE_DEBUG=1 for the traceback)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
