"""1,000 open orders waiting on tracking: the worker's memory and its idle CPU.

    .venv/bin/python -m bench.memory [--orders 1000] [--idle-seconds 60] [--workers 1]

Starts its own stack (``bench/stack.py``) with parcels that never move (``SANDBOX_CLOCK_PACE=0``)
and the production polling interval for tracking (``TRACKING_POLL_SECONDS``, the Settings
default unless ``--poll-seconds``). ``--orders`` storefront orders are placed through the API;
each is paid, its ``Shipment`` child buys the label, reads tracking once (``PRE_TRANSIT``) and
then waits for a Shippo webhook or its polling timer, with the order ``fulfilling``. Once every
label is recorded, the outbox is empty and the worker has gone quiet, the worker process is
sampled every second for ``--idle-seconds``: RSS (target < 300 MiB) and CPU (target < 5 % of a
core), with the Temporal dev server's CPU beside it. Prints a table; exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from dataclasses import dataclass, field

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.procs import CpuMeter, load, log_to_file, positive, temporal_server, wait_quiet
from bench.stack import ROOT, running_stack, wait_ready
from bench.storefront import count_ended, make_merchant, post_order, settled
from db.session import make_engine
from fulfil.settings import Settings

MiB = 1024 * 1024
RSS_TARGET_MIB = 300
CPU_TARGET_PERCENT = 5.0


@dataclass
class Samples:
    """One reading per second of a process: RSS (bytes) and CPU over that second (%)."""

    rss: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def average_cpu(self) -> float:
        return sum(self.cpu) / len(self.cpu) if self.cpu else 0.0


async def sample(
    processes: dict[str, psutil.Process], seconds: float, stop: asyncio.Event | None = None
) -> dict[str, Samples]:
    """Every second for ``seconds`` (or until ``stop``): RSS and CPU of each process."""
    found = {name: Samples() for name in processes}
    meters = {name: CpuMeter([p]) for name, p in processes.items()}
    for meter in meters.values():
        meter.start()
    ends = time.monotonic() + seconds
    while time.monotonic() < ends and not (stop and stop.is_set()):
        await asyncio.sleep(1)
        for name, process in processes.items():
            found[name].cpu.append(meters[name].stop())
            meters[name].start()
            found[name].rss.append(process.memory_info().rss)
    return found


async def statuses(db: AsyncEngine) -> dict[str, int]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status"))
        return {status: int(n) for status, n in rows}


async def main(
    orders: int, idle_seconds: float, workers: int, clients: int, poll_seconds: int
) -> int:
    loads = [load()]
    started = time.monotonic()
    async with (
        running_stack(
            ROOT / ".data" / "bench" / "memory",
            sandbox_clock_pace=0,
            tracking_poll_seconds=poll_seconds,
        ) as stack,
        httpx.AsyncClient(timeout=30) as http,
    ):
        log_to_file(stack.log_dir / "api-and-sandbox.log")
        engine_workers = [psutil.Process(stack.start_worker().pid) for _ in range(workers)]
        await wait_ready(stack, http)
        db = make_engine(stack.settings.database_url, pool_size=2)
        temporal = temporal_server(stack)
        processes = {f"worker {n}": p for n, p in enumerate(engine_workers)}
        processes["temporal"] = temporal
        try:
            await wait_quiet(engine_workers, percent=5, window=2, timeout=30)
            baseline = {name: p.memory_info().rss for name, p in processes.items()}
            headers = await make_merchant(stack, http)

            # Place every order, reading the worker's memory while it works.
            placing = time.monotonic()
            stop = asyncio.Event()
            busy = asyncio.create_task(sample(processes, 24 * 3600, stop))
            numbers = itertools.count()

            async def client() -> None:
                while next(numbers) < orders:
                    await post_order(stack, http, headers)

            await asyncio.gather(*(client() for _ in range(clients)))
            reached, failed = await count_ended(db)
            deadline = time.monotonic() + 1800
            while reached + failed < orders and time.monotonic() < deadline:
                await asyncio.sleep(1)
                reached, failed = await count_ended(db)
            labelled = await settled(db, orders, 600)
            placed_seconds = time.monotonic() - placing
            quiet_after = await wait_quiet(engine_workers, percent=5, window=3, timeout=120)
            stop.set()
            under_load = await busy
            loads.append(load())

            open_now = await statuses(db)
            running = {
                kind: (
                    await stack.temporal.count_workflows(
                        f'WorkflowType = "{kind}" AND ExecutionStatus = "Running"'
                    )
                ).count
                for kind in ("OrderPlacement", "Shipment")
            }
            idle = await sample(processes, idle_seconds)
            loads.append(load())
        finally:
            await db.dispose()

    waiting = open_now.get("fulfilling", 0) + open_now.get("shipped", 0)
    worker_rss_max = max(max(idle[name].rss) for name in processes if name != "temporal")
    worker_cpu = sum(idle[name].average_cpu() for name in processes if name != "temporal")
    checks = [
        ("orders waiting (fulfilling/shipped)", waiting, orders, waiting == orders),
        ("labels recorded, outbox empty", "yes" if labelled else "no", "yes", labelled),
        (
            "worker RSS max while idle (MiB)",
            f"{worker_rss_max / MiB:.0f}",
            f"< {RSS_TARGET_MIB}",
            worker_rss_max < RSS_TARGET_MIB * MiB,
        ),
        (
            "worker CPU while idle (% of a core)",
            f"{worker_cpu:.2f}",
            f"< {CPU_TARGET_PERCENT:.0f}",
            worker_cpu < CPU_TARGET_PERCENT,
        ),
    ]
    info = [
        ("orders by status", ", ".join(f"{k} {v}" for k, v in sorted(open_now.items()))),
        (
            "running OrderPlacement / Shipment",
            f"{running['OrderPlacement']} / {running['Shipment']}",
        ),
        ("placing took (s)", f"{placed_seconds:.0f}, then quiet after {quiet_after:.0f} s"),
    ]
    for name in processes:
        info += [
            (
                f"{name} RSS MiB: before / placing max / idle max",
                f"{baseline[name] / MiB:.0f} / {max(under_load[name].rss) / MiB:.0f}"
                f" / {max(idle[name].rss) / MiB:.0f}",
            ),
            (
                f"{name} CPU %: placing avg / idle avg / idle max 1 s",
                f"{under_load[name].average_cpu():.1f} / {idle[name].average_cpu():.2f}"
                f" / {max(idle[name].cpu):.1f}",
            ),
        ]
    print(
        f"\nmemory: {orders} open orders, {workers} worker process(es), tracking polled every "
        f"{poll_seconds} s (backing off to 8x), {idle_seconds:.0f} s idle, {os.cpu_count()} cores, "
        f"run {time.monotonic() - started:.0f} s; load average {' -> '.join(loads)}"
    )
    for what, value in info:
        print(f"  {what:<56}{value}")
    print(f"{'what':<40}{'measured':>12}{'target':>10}")
    for what, measured, target, ok in checks:
        flag = "" if ok else "   <-- MISSED"
        print(f"{what:<40}{measured!s:>12}{target!s:>10}{flag}")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=positive, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--workers", type=positive, default=1)
    parser.add_argument("--clients", type=positive, default=4)
    parser.add_argument(
        "--poll-seconds",
        type=positive,
        default=Settings.model_fields["tracking_poll_seconds"].default,
        help="TRACKING_POLL_SECONDS (default: the Settings default)",
    )
    args = parser.parse_args()
    status = asyncio.run(
        main(args.orders, args.idle_seconds, args.workers, args.clients, args.poll_seconds)
    )
    sys.stdout.flush()
    os._exit(status)  # temporalio can abort the interpreter at exit (sdk-python #300)
