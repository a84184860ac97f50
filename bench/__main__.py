"""``python -m bench ...``: the same as the ``rnnbench`` command (see bench/cli.py)."""

import sys

from .cli import main

sys.exit(main())
