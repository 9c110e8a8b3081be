"""Session fixtures: a fresh PostgreSQL database, settings pointing at free ports.

Heavier fixtures (sandbox, API server, Temporal, worker) live in
``tests/stack.py`` and are pulled in where a test needs them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.migrate import upgrade
from db.session import make_engine, make_sessionmaker
from fulfil.devstack import ensure_postgres, ensure_redis
from fulfil.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new database, migrated to head, dropped afterwards.

    On the machine's PostgreSQL when it answers, else an embedded one under .data/.
    """
    server = make_url(ensure_postgres(POSTGRES_URL, ROOT / ".data" / "test-pg"))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(_libpq(server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The test session's own database."""
    with fresh_database("fulfil_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    return ensure_redis(REDIS_URL, ROOT / ".data" / "test-redis", port=6381)


@pytest.fixture(scope="session")
def ports() -> dict[str, int]:
    return {"api": free_port(), "sandbox": free_port()}


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, ports: dict[str, int]) -> Settings:
    sandbox = f"http://127.0.0.1:{ports['sandbox']}"
    return Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        api_base=f"http://127.0.0.1:{ports['api']}",
        sandbox_base=sandbox,
        stripe_api_base=f"{sandbox}/stripe",
        shippo_api_base=f"{sandbox}/shippo",
        tiktok_api_base=f"{sandbox}/tiktok",
        cloudflare_api_base=f"{sandbox}/cloudflare/client/v4",
        email_api_base=f"{sandbox}/email",
        task_queue=f"test-{uuid.uuid4().hex[:8]}",
        payment_action_timeout_seconds=60,
        outbox_relay_interval_seconds=0.5,
        # Parcels move only when a test advances the sandbox clock.
        sandbox_clock_pace=0,
        tracking_poll_seconds=5,
    )


@pytest.fixture(scope="session")
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


# temporalio can abort the interpreter at exit ("PyGILState_Release", sdk-python
# #300). Keep pytest's status and leave with os._exit once the summary is out.
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _progress["done"] = True
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status and not os.environ.get("PYTEST_NO_HARD_EXIT"):
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])


# After a failure, tearing down the session's event loop can wait forever on
# tasks Temporal's worker left behind. A red run must still end (and say why).
_progress = {"last": 0.0, "failed": False, "done": False}
HUNG_AFTER_FAILURE_SECONDS = 300


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    import time

    _progress["last"] = time.monotonic()
    if report.failed:
        _progress["failed"] = True


def _watchdog() -> None:
    import sys
    import time

    while not _progress["done"]:
        time.sleep(10)
        idle = time.monotonic() - float(_progress["last"] or time.monotonic())
        if _progress["failed"] and idle > HUNG_AFTER_FAILURE_SECONDS:
            sys.stderr.write(
                f"\nno progress for {idle:.0f} s after a failed test: teardown hung; exiting 1\n"
            )
            sys.stderr.flush()
            os._exit(1)


def pytest_sessionstart(session: pytest.Session) -> None:
    import threading

    threading.Thread(target=_watchdog, name="hang-watchdog", daemon=True).start()
