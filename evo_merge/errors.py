"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class EvoMergeError(Exception):
    """A problem with the user's input (config, data, weights, store).

    The message must name the problem and the offending file or value in one line.
    """
