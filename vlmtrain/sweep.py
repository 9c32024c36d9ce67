"""``python -m vlmtrain.sweep NAME_OR_FILE``: a W&B sweep spec (see :mod:`vlmtrain.tracking.sweeps`)."""

from __future__ import annotations

import sys

from vlmtrain.tracking.sweeps import main

if __name__ == "__main__":
    sys.exit(main())
