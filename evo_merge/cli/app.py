"""The ``evo-merge`` command line: the typer app with every command, and the entry point.

Imports run one way: this module imports the command modules, which import only
``cli.output`` and the library. User errors print one line and exit with code 2.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
from typing import NoReturn

import typer
from typer.exceptions import TyperException

from evo_merge.cli import compare, config_cmd, evaluate, manage, merge, readers, run
from evo_merge.cli.output import err_console
from evo_merge.errors import EvoMergeError, RunInterrupted, machine_error

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evolve populations of LLMs by weight merging, mutation, selection and succession.")


class _Stopped(Exception):
    """A run's RunInterrupted, carried past typer (which turns a KeyboardInterrupt into a bare exit 130)."""


def _telling_interrupts(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RunInterrupted as exc:
            raise _Stopped(str(exc)) from None
    return wrapper


for command in (run.run, run.resume, manage.replay, manage.gc, run.search, compare.compare, readers.candidates,
                readers.status, merge.merge, manage.export, readers.lineage, readers.plot):
    app.command()(_telling_interrupts(command))
app.command("eval")(_telling_interrupts(evaluate.eval_))
app.command("config")(config_cmd.config)


def main() -> None:
    """Entry point: one line and exit 2 on user errors; a traceback only with EVO_MERGE_DEBUG=1."""
    debug = os.environ.get("EVO_MERGE_DEBUG") == "1"
    try:
        code = app(standalone_mode=False)  # usage errors come back here, told in one line below
    except typer.Abort:
        fail("interrupted", 130)
    except TyperException as exc:  # click's usage errors (typer's own copy of click)
        ctx = getattr(exc, "ctx", None)
        see = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        fail(f"{exc.format_message()}{see}", getattr(exc, "exit_code", 2))
    except EvoMergeError as exc:
        fail(str(exc))
    except _Stopped as exc:  # a run says where it stopped and how to continue
        fail(str(exc), 130)
    except (OSError, sqlite3.OperationalError) as exc:
        if debug:
            raise
        fail(machine_error(exc))
    except Exception as exc:  # noqa: BLE001 - last resort: never a traceback for users
        if debug:
            raise
        fail(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
             f"(set EVO_MERGE_DEBUG=1 for the traceback)", 1, prefix="")
    if code == 130:  # typer turns a KeyboardInterrupt outside a run into exit code 130
        fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int = 2, prefix: str = "error: ") -> NoReturn:
    err_console.print(f"{prefix}{message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)
