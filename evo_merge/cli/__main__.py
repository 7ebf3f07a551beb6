"""``python -m evo_merge.cli``: the same entry point as the ``evo-merge`` script."""

from evo_merge.cli.app import main

main()
