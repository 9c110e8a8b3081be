"""``python -m devstack``: see :mod:`devstack.stack`."""

from __future__ import annotations

import os
import sys

from devstack.stack import main

if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio's runtime can abort the interpreter at exit; nothing is left to clean up.
    os._exit(status)
