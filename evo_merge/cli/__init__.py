"""The ``evo-merge`` command line (``app``: the commands; one module per command group)."""
