"""``python -m meshclient ...``: the same command line as the ``meshclient`` script (no PATH needed)."""

from __future__ import annotations

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
