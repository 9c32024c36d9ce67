"""``python -m vlmtrain.compare PATH_OR_PROJECT...``: see :mod:`vlmtrain.tracking.compare`."""

from __future__ import annotations

import sys

from vlmtrain.tracking.compare import main

if __name__ == "__main__":
    sys.exit(main())
