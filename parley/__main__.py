"""``python -m parley ...``: the ``parley`` command without the console script."""

from parley.cli import main

main()
