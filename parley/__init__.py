"""The composition root: the ``parley`` command line (``parley/cli.py``), above every area."""
