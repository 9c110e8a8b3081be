"""Session fixtures: a fresh PostgreSQL database, settings pointing at free ports.

Heavier fixtures (sandbox, API server, Temporal, worker) live in
``tests/stack.py`` and are pulled in where a test needs them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.migrate import upgrade
from db.session import make_engine, make_sessionmaker
from fulfil.settings import Settings

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of its own for this test session, migrated to head, dropped after."""
    name = f"fulfil_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def ports() -> dict[str, int]:
    return {"api": free_port(), "sandbox": free_port()}


@pytest.fixture(scope="session")
def settings(database_url: str, ports: dict[str, int]) -> Settings:
    sandbox = f"http://127.0.0.1:{ports['sandbox']}"
    return Settings(
        env="test",
        database_url=database_url,
        redis_url=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
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
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status and not os.environ.get("PYTEST_NO_HARD_EXIT"):
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])
