"""Session fixtures: a fresh PostgreSQL database, settings pointing at free ports.

Heavier fixtures (sandbox, API server, Temporal, worker) live in
``tests/integration/conftest.py`` and are pulled in where a test needs them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.session import make_engine, make_sessionmaker
from devstack import harness
from devstack.services import ensure_redis
from fulfil.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new database, migrated to head, dropped afterwards (the machine's PostgreSQL when it
    answers, else an embedded one under .data/)."""
    with harness.fresh_database(POSTGRES_URL, prefix, ROOT / ".data" / "test-pg") as url:
        yield url


free_port = harness.free_port


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
        cloudflare_check_base=f"{sandbox}/_sandbox/cloudflare/hosts",
        task_queue=f"test-{uuid.uuid4().hex[:8]}",
        payment_action_timeout_seconds=60,
        outbox_relay_interval_seconds=0.5,
        # Parcels move only when a test advances the sandbox clock.
        sandbox_clock_pace=0,
        tracking_poll_seconds=5,
        # Merchant webhooks may reach the sandbox's recorder (on loopback), nothing else private.
        webhook_url_allowlist=f"{sandbox}/_sandbox/hooks/",
        # Every test client comes from 127.0.0.1 and polls: the per-IP and per-key limits are
        # tested on their own (tests/api/test_hardening.py).
        anonymous_rate_limit=1_000_000,
        rate_limit_per_minute=1_000_000,
        # Payouts: a 5-second hold released by a 2-second schedule.
        payout_hold_seconds=5,
        payout_run_interval_seconds=2,
        # A restricted seller's transfer is tried again 2 s after a refusal (30 s in production).
        payout_transfer_retry_seconds=2,
        # A checkout waits up to 15 s for its charge on a busy machine, inside a longer deadline.
        checkout_wait_seconds=15,
        api_request_deadline_seconds=30,
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
