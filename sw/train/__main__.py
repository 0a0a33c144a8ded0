"""``python -m sw.train``: the ``swat-train`` CLI."""

import sys

from .cli import main

sys.exit(main())
