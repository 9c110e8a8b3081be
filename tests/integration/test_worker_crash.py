"""kill -9 the worker while orders are charging: every order still ends with exactly one charge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
from devstack.harness import free_port, in_process
from fulfil.enums import DeploymentStep
from fulfil.settings import Settings
from tests.integration.support import create_merchant, eventually
from tests.integration.test_deployment import (
    SAMPLE_RESOURCES,
    STEP_CALLS,
    deploy_body,
    ended,
    made_for,
    progress,
    resource_counts,
    start,
)
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
        self.settings = settings
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "worker.py"],
                cwd=ROOT,
                env=worker_env(self.settings),
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
    return stack_settings.model_copy(
        update={
            "task_queue": f"crash-{uuid.uuid4().hex[:8]}",
            # A killed worker's deployment step is retried 3 s after its last heartbeat.
            "deploy_step_heartbeat_seconds": 3,
            "rate_limit_per_minute": 100_000,
            "sticky_schedule_to_start_seconds": 1.0,
            "worker_metrics_port": free_port(),
        }
    )


@pytest.fixture
def worker_process(crash_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(crash_settings, tmp_path / "worker.log")
    yield process
    process.stop()


@pytest.fixture
async def crash_api(crash_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(create_app(crash_settings)) as client:
        yield client


# Its own deadlines add up to more than the suite's 180 s hang guard.
@pytest.mark.timeout(300)
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
    # The restarted worker serves its SDK metrics for Prometheus, labelled with its queue.
    scraped = await http.get(
        f"http://127.0.0.1:{worker_process.settings.worker_metrics_port}/metrics"
    )
    queue = f'task_queue="{worker_process.settings.task_queue}"'
    served = [line for line in scraped.text.splitlines() if line.startswith("temporal_")]
    assert any("activity_execution" in line and queue in line for line in served), served[:20]
    assert any("workflow_task" in line and queue in line for line in served), served[:20]
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


# Its own deadlines add up to more than the suite's 180 s hang guard.
@pytest.mark.timeout(660)
async def test_kill_9_in_every_deployment_step(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    ops_headers: dict[str, str],
    crash_api: httpx.AsyncClient,
    worker_process: WorkerProcess,
) -> None:
    """One deployment, nine kills: the worker dies in the middle of each step in turn and
    the next one carries on. It succeeds, and nothing in the buyer's account is made twice."""
    sandbox = engine["sandbox"]
    buyer = await create_merchant(crash_api, "http://api", ops_headers)
    body = deploy_body(f"cf-{uuid.uuid4().hex}")
    await http.delete(f"{sandbox}/_sandbox/faults")
    for method, path in STEP_CALLS.values():
        # Each step's first call is slow: the worker is killed while it waits.
        r = await http.post(
            f"{sandbox}/_sandbox/faults",
            json={
                "provider": "cloudflare",
                "method": method,
                "path": path,
                "latency_ms": 2500,
                "times": 1,
            },
        )
        assert r.status_code in (200, 201), r.text
    killed = []
    began = time.monotonic()
    try:
        worker_process.start()
        deployment_id = await start(crash_api, "http://api", buyer, body)
        for step in DeploymentStep:

            async def in_step(step: DeploymentStep = step) -> bool:
                found = await progress(crash_api, "http://api", buyer, deployment_id)
                assert found["status"] not in ("rolled_back", "failed"), found
                return any(
                    s["name"] == step.value and s["status"] == "running" for s in found["steps"]
                )

            await eventually(in_step, timeout=60, interval=0.2)
            print(f"{time.monotonic() - began:6.1f}s kill in {step.value}")
            worker_process.kill9()
            killed.append(step.value)
            worker_process.start()
        result = await ended(crash_api, "http://api", buyer, deployment_id, timeout=120)
    finally:
        await http.delete(f"{sandbox}/_sandbox/faults")
    assert killed == [s.value for s in DeploymentStep]
    assert result["status"] == "succeeded", result
    assert all(s["status"] in ("succeeded", "skipped") for s in result["steps"]), result
    made = await made_for(http, sandbox, body)
    names = [(r["type"], r["name"]) for r in made]
    assert len(names) == len(set(names)), names  # every resource created exactly once
    assert all(not r["deleted"] for r in made)
    assert resource_counts(result) == SAMPLE_RESOURCES
    print(f"kills={len(killed)} resources={len(names)}")


def test_a_worker_started_while_temporal_is_down_waits_for_it(
    crash_settings: Settings, tmp_path: Path
) -> None:
    """It keeps trying (and saying so) instead of exiting, and stops at once when asked."""
    down = crash_settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "worker_metrics_port": 0}
    )
    log = tmp_path / "worker.log"
    process = WorkerProcess(down, log)
    process.start()
    assert process.proc is not None
    try:
        deadline = time.monotonic() + 30
        while "Temporal does not answer" not in log.read_text(errors="replace"):
            assert process.proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert log.read_text().count("Temporal does not answer") >= 1
        assert process.proc.poll() is None  # still there, waiting
        process.proc.terminate()
        assert process.proc.wait(timeout=10) == 0
    finally:
        process.stop()
