"""kill -9 the worker while orders are charging: every order still ends with exactly one charge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from db.models import LedgerEntry
from fulfil.settings import Settings
from tests.integration.support import create_merchant, eventually
from tests.integration.test_order_placement import (
    PAID,
    SHIP_FROM,
    intents_for,
    place,
    sandbox_ledger,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[name.upper()] = str(value)
    return env


class WorkerProcess:
    def __init__(self, settings: Settings, log: Path) -> None:
        self._settings = settings
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "worker.py"],
                cwd=ROOT,
                env=worker_env(self._settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def crash_settings(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(update={"task_queue": f"crash-{uuid.uuid4().hex[:8]}"})


@pytest.fixture
def worker_process(crash_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(crash_settings, tmp_path / "worker.log")
    yield process
    process.stop()


@pytest.fixture
async def crash_api(crash_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(crash_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=30
        ) as client,
    ):
        yield client


async def test_kill_9_while_charging(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    ops_headers: dict[str, str],
    crash_api: httpx.AsyncClient,
    worker_process: WorkerProcess,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await create_merchant(http, api, ops_headers, ship_from=SHIP_FROM)
    await http.post(
        f"{api}/api/v1/products",
        json={"sku": "MUG-1", "name": "Mug", "price": 1800, "currency": "USD", "stock": 1000},
        headers=merchant["headers"],
    )
    # Slow charges, and a third of them lose their response after the charge happened.
    await http.post(
        f"{sandbox}/_sandbox/faults",
        json={"provider": "stripe", "method": "POST", "path": "payment_intents", "latency_ms": 800},
    )
    await http.post(
        f"{sandbox}/_sandbox/faults",
        json={
            "provider": "stripe",
            "method": "POST",
            "path": "payment_intents",
            "status": 500,
            "rate": 0.33,
            "when": "after",
        },
    )
    try:
        worker_process.start()
        responses = [await place(crash_api, "http://api", merchant) for _ in range(12)]
        assert all(r.status_code == 202 for r in responses)
        order_ids = [r.json()["order_id"] for r in responses]

        async def some_charging() -> int:
            ledger = await sandbox_ledger(http, sandbox)
            return sum(1 for o in order_ids if intents_for(ledger, o))

        await eventually(some_charging, timeout=60)
        worker_process.kill9()
        worker_process.start()

        async def all_terminal() -> list[dict[str, Any]] | None:
            orders = []
            for order_id in order_ids:
                response = await http.get(
                    f"{api}/api/v1/orders/{order_id}", headers=merchant["headers"]
                )
                orders.append(response.json())
            done = all(o["status"] in PAID | {"failed", "cancelled"} for o in orders)
            return orders if done else None

        finals = await eventually(all_terminal, timeout=150, interval=0.5)
    finally:
        await http.delete(f"{sandbox}/_sandbox/faults")

    ledger = await sandbox_ledger(http, sandbox)
    succeeded = {
        o: sum(pi["status"] == "succeeded" for pi in intents_for(ledger, o)) for o in order_ids
    }
    print(f"orders={len(order_ids)} statuses={[o['status'] for o in finals]} charges={succeeded}")
    assert all(o["status"] in PAID for o in finals)
    assert all(count == 1 for count in succeeded.values()), succeeded
    assert all(len(intents_for(ledger, o)) == 1 for o in order_ids)
    async with sessionmaker() as session:
        unbalanced = await session.scalars(
            select(LedgerEntry.order_id)
            .where(LedgerEntry.order_id.in_(order_ids))
            .group_by(LedgerEntry.order_id)
            .having(func.sum(LedgerEntry.amount) != 0)
        )
        assert unbalanced.all() == []
