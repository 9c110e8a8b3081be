"""Storefront orders per second from ``POST /api/v1/orders`` to ``fulfilling``, against the
ceiling of the same server: a no-op workflow of the same shape (``bench/noop.py``).

    .venv/bin/python -m bench.throughput [--orders 300] [--workers 1] [--clients 4]

Starts its own stack (``bench/stack.py``): Temporal dev server, a fresh database, Redis, the
sandbox and the API in this process, ``--workers`` engine workers as subprocesses. One merchant
(ship-from, cheapest rate, a webhook endpoint) with one product; ``--clients`` clients post
``--orders`` orders as fast as the API takes them, and an order counts when its
``fulfilment.started`` event is in PostgreSQL (paid, stock committed, ``Shipment`` about to
start). Then, on the same server, ``--workers`` processes of ``bench/noop_worker.py`` run as many
no-op workflows started straight with the Temporal client. Each rate is every unit over the
whole run, first sent to last arrived: with hundreds in flight Temporal interleaves the tasks
of every run, so arrivals bunch up at the end and a rate over the middle arrivals (printed too)
measures that bunching, not the throughput. Parcels do not move
(``SANDBOX_CLOCK_PACE=0``): tracking is days in production, not seconds of a benchmark.

Prints orders/s, no-op workflows/s, their ratio (target ≥ 0.8), the CPU of the workers, the
dev server, this process (API, sandbox, clients) and PostgreSQL, and the POST → fulfilling
latency; exits 1 when the ratio misses the target or an order does not get there. The phases
they are measured in and the table: ``bench/throughput_report.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx
import psutil
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from bench.noop import NoopOrder, NoopOrderInput
from bench.procs import (
    CpuMeter,
    load,
    log_to_file,
    positive,
    postgres_processes,
    temporal_server,
    wait_quiet,
)
from bench.stack import ROOT, Stack, running_stack, wait_ready
from bench.storefront import count_ended, fulfilling_since, make_merchant, post_order, settled
from bench.throughput_report import Phase, history_shape, report
from db.session import make_engine
from fulfil.ids import order_workflow_id, shipment_workflow_id
from fulfil.settings import notify_task_queue
from fulfil.temporal import MERCHANT_ID, ORDER_ID, ORDER_STATUS

WARM_UP = 5


# --- the engine ---------------------------------------------------------------------


async def send_all(
    phase: Phase, count: int, clients: int, send: Callable[[int], Awaitable[str]]
) -> None:
    numbers = itertools.count()
    started = time.monotonic()

    async def client() -> None:
        while (n := next(numbers)) < count:
            at = time.time()
            phase.sent[await send(n)] = at

    await asyncio.gather(*(client() for _ in range(clients)))
    phase.send_seconds = time.monotonic() - started


async def wait_counted(
    count: Callable[[], Awaitable[tuple[int, int]]], expected: int, timeout: float
) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    reached, failed = await count()
    while reached + failed < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        reached, failed = await count()
    return reached, failed


async def run_orders(
    stack: Stack,
    http: httpx.AsyncClient,
    db: AsyncEngine,
    orders: int,
    clients: int,
    timeout: float,
    cpu: dict[str, CpuMeter],
) -> Phase:
    headers = await make_merchant(stack, http)
    # Warm-up: imports, pools, sticky caches; not measured.
    for _ in range(WARM_UP):
        await post_order(stack, http, headers)
    await wait_counted(lambda: count_ended(db), WARM_UP, timeout)
    before = set(await fulfilling_since(db))

    phase = Phase("orders", cpu=cpu)
    for meter in phase.meters():
        meter.start()
    sending = asyncio.create_task(
        send_all(phase, orders, clients, lambda _: post_order(stack, http, headers))
    )
    _, failed = await wait_counted(lambda: count_ended(db), WARM_UP + orders, timeout)
    for meter in phase.meters():
        meter.stop()
    await sending
    phase.done = {k: v for k, v in (await fulfilling_since(db)).items() if k not in before}
    phase.failed = failed
    return phase


# --- the ceiling ---------------------------------------------------------------------


def start_noop_workers(stack: Stack, task_queue: str, count: int) -> list[subprocess.Popen[bytes]]:
    started = []
    for n in range(count):
        log = stack.log_dir / f"noop-worker-{n}.log"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.noop_worker",
                "--task-queue",
                task_queue,
                "--address",
                stack.settings.temporal_address,
            ],
            cwd=ROOT,
            env=stack.worker_env(),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        started.append(process)
    deadline = time.monotonic() + 60
    for n, process in enumerate(started):
        log = stack.log_dir / f"noop-worker-{n}.log"
        while "noop worker on" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"noop worker {n} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    return started


async def start_noop(client: Client, task_queue: str, workflow_id: str) -> str:
    order_id = workflow_id.removeprefix("noop-")
    await client.start_workflow(
        NoopOrder.run,
        NoopOrderInput(
            order_id=order_id,
            merchant_id="mer_bench",
            notify_task_queue=notify_task_queue(task_queue),
        ),
        id=workflow_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(MERCHANT_ID, "mer_bench"),
                SearchAttributePair(ORDER_ID, order_id),
                SearchAttributePair(ORDER_STATUS, "pending"),
            ]
        ),
        static_summary=f"Order {order_id} · 1 item · USD 23.00 · Bench Shop",
    )
    return workflow_id


async def noop_counts(client: Client, task_queue: str) -> tuple[int, int]:
    base = f'TaskQueue = "{task_queue}" AND WorkflowType = "NoopOrder"'
    done = await client.count_workflows(f'{base} AND ExecutionStatus = "Completed"')
    failed = await client.count_workflows(
        f'{base} AND ExecutionStatus != "Completed" AND ExecutionStatus != "Running"'
    )
    return done.count, failed.count


async def noop_closed(client: Client, task_queue: str) -> dict[str, float]:
    query = (
        f'TaskQueue = "{task_queue}" AND WorkflowType = "NoopOrder" '
        'AND ExecutionStatus = "Completed"'
    )
    closed: dict[str, float] = {}
    async for execution in client.list_workflows(query, page_size=1000):
        at: datetime | None = execution.close_time
        if at is not None:
            closed[execution.id] = at.timestamp()
    return closed


async def run_noop(
    stack: Stack,
    runs: int,
    clients: int,
    timeout: float,
    cpu: dict[str, CpuMeter],
    task_queue: str,
) -> Phase:
    client = stack.temporal
    for n in range(WARM_UP):
        await start_noop(client, task_queue, f"noop-warm-{n}")
    await wait_counted(lambda: noop_counts(client, task_queue), WARM_UP, timeout)
    before = set(await noop_closed(client, task_queue))

    phase = Phase("no-op", cpu=cpu)
    for meter in phase.meters():
        meter.start()
    sending = asyncio.create_task(
        send_all(phase, runs, clients, lambda n: start_noop(client, task_queue, f"noop-{n}"))
    )
    _, failed = await wait_counted(lambda: noop_counts(client, task_queue), WARM_UP + runs, timeout)
    for meter in phase.meters():
        meter.stop()
    await sending
    closed = await noop_closed(client, task_queue)
    phase.done = {k: v for k, v in closed.items() if k not in before}
    phase.failed = failed
    return phase


async def main(orders: int, workers: int, clients: int, timeout: float) -> int:
    loads = [load()]
    async with (
        running_stack(ROOT / ".data" / "bench" / "throughput", sandbox_clock_pace=0) as stack,
        httpx.AsyncClient(timeout=30) as http,
    ):
        log_to_file(stack.log_dir / "api-and-sandbox.log")
        engine_workers = [psutil.Process(stack.start_worker().pid) for _ in range(workers)]
        await wait_ready(stack, http)
        db = make_engine(stack.settings.database_url, pool_size=2)
        temporal = temporal_server(stack)
        bench = psutil.Process(os.getpid())

        def shared(**more: list[psutil.Process]) -> dict[str, CpuMeter]:
            groups: dict[str, list[psutil.Process]] = {
                "engine workers": engine_workers,
                "temporal": [temporal],
                "bench": [bench],
                "postgres": postgres_processes(),
                **more,
            }
            return {name: CpuMeter(processes) for name, processes in groups.items()}

        try:
            order_phase = await run_orders(stack, http, db, orders, clients, timeout, shared())
            loads.append(load())
            # The Shipment children finish buying labels before the ceiling is measured.
            await settled(db, WARM_UP + orders, timeout)
            await wait_quiet([*engine_workers, temporal])
            sample = min(order_phase.done, key=order_phase.done.__getitem__)
            order_phase.shape = await history_shape(
                stack.temporal, [order_workflow_id(sample), shipment_workflow_id(sample)]
            )
            task_queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
            noop_workers = start_noop_workers(stack, task_queue, workers)
            try:
                noop_phase = await run_noop(
                    stack,
                    orders,
                    clients,
                    timeout,
                    shared(**{"no-op workers": [psutil.Process(p.pid) for p in noop_workers]}),
                    task_queue,
                )
            finally:
                for process in noop_workers:
                    process.terminate()
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
            noop_phase.shape = await history_shape(stack.temporal, ["noop-0", "noop-shipment-0"])
            loads.append(load())
        finally:
            await db.dispose()
        return report(order_phase, noop_phase, orders, workers, loads)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=positive, default=300)
    parser.add_argument("--workers", type=positive, default=1)
    parser.add_argument("--clients", type=positive, default=4)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per phase")
    args = parser.parse_args()
    status = asyncio.run(main(args.orders, args.workers, args.clients, args.timeout))
    sys.stdout.flush()
    os._exit(status)  # temporalio can abort the interpreter at exit (sdk-python #300)
