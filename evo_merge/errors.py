"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class EvoMergeError(Exception):
    """A problem with the user's input (config, data, weights, store).

    The message must name the problem and the offending file or value in one line.
    """


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says where the run stopped and how to continue it.
    The CLI prints it and exits with code 130."""


def machine_error(exc: BaseException) -> str:
    """One line for a failure of the machine rather than the input: disk full, read-only, too long a name."""
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"the lineage database cannot be written ({str(exc).splitlines()[0]})"
