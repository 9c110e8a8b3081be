"""The measurement and the report of ``bench/throughput.py``: a measured :class:`Phase` (when
each unit was sent and got there, CPU meters), percentiles, the shape of a unit's histories
and the printed table.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.noop import NOTIFICATIONS, STEPS
from bench.procs import CpuMeter, MachineMeter

TARGET_RATIO = 0.8


@dataclass
class Phase:
    """One measured run: when each unit was sent and when it got there (epoch seconds)."""

    name: str
    sent: dict[str, float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)
    send_seconds: float = 0.0
    cpu: dict[str, CpuMeter] = field(default_factory=dict)
    machine: MachineMeter = field(default_factory=MachineMeter)
    failed: int = 0
    shape: dict[str, int] = field(default_factory=dict)

    def meters(self) -> list[CpuMeter | MachineMeter]:
        return [*self.cpu.values(), self.machine]

    def rate(self) -> float:
        """Every unit over the whole run: first sent → last arrived (the throughput)."""
        if not self.done:
            return 0.0
        return len(self.done) / (max(self.done.values()) - min(self.sent.values()))

    def middle_rate(self) -> float:
        """Arrivals per second between the 10th and the 90th percentile arrival."""
        times = sorted(self.done.values())
        if len(times) < 10:
            return self.rate()
        first, last = int(len(times) * 0.1), int(len(times) * 0.9) - 1
        return (last - first) / (times[last] - times[first])

    def cpu_seconds_each(self, name: str) -> float:
        meter = self.cpu.get(name)
        return meter.seconds / len(self.done) if meter and self.done else float("nan")

    def latencies(self) -> list[float]:
        return sorted(self.done[k] - self.sent[k] for k in self.done if k in self.sent)


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# What one unit costs the server, read from its histories (the run and its child).
SHAPE = {
    "history events": None,
    "activities": EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    "workflow tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    "signals received": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    "signals sent": EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    "timers": EventType.EVENT_TYPE_TIMER_STARTED,
}


async def history_shape(client: Client, workflow_ids: list[str]) -> dict[str, int]:
    counted: Counter[int] = Counter()
    events = 0
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        events += len(history.events)
        counted.update(event.event_type for event in history.events)
    return {name: events if kind is None else counted[kind] for name, kind in SHAPE.items()}


# --- the report ----------------------------------------------------------------------


def report(orders: Phase, noop: Phase, count: int, workers: int, loads: list[str]) -> int:
    ratio = orders.rate() / noop.rate() if noop.rate() else 0.0
    order_lat, noop_lat = orders.latencies(), noop.latencies()

    def cpu(phase: Phase, name: str) -> str:
        meter = phase.cpu.get(name)
        return f"{meter.percent:.0f}" if meter else "-"

    rows: list[tuple[str, str, str]] = [
        ("sent (POST / client start)", str(len(orders.sent)), str(len(noop.sent))),
        ("reached fulfilling / completed", str(len(orders.done)), str(len(noop.done))),
        ("failed", str(orders.failed), str(noop.failed)),
        (
            "send rate /s",
            f"{len(orders.sent) / orders.send_seconds:.1f}",
            f"{len(noop.sent) / noop.send_seconds:.1f}",
        ),
        ("per s (all: first sent -> last there)", f"{orders.rate():.2f}", f"{noop.rate():.2f}"),
        (
            "per s between 10th and 90th arrival",
            f"{orders.middle_rate():.2f}",
            f"{noop.middle_rate():.2f}",
        ),
        (
            "latency p50 s",
            f"{percentile(order_lat, 50):.2f}",
            f"{percentile(noop_lat, 50):.2f}",
        ),
        (
            "latency p99 s",
            f"{percentile(order_lat, 99):.2f}",
            f"{percentile(noop_lat, 99):.2f}",
        ),
        ("CPU % engine worker(s)", cpu(orders, "engine workers"), cpu(noop, "engine workers")),
        ("CPU % no-op worker(s)", "-", cpu(noop, "no-op workers")),
        ("CPU % Temporal dev server", cpu(orders, "temporal"), cpu(noop, "temporal")),
        ("CPU % bench (API, sandbox, clients)", cpu(orders, "bench"), cpu(noop, "bench")),
        ("CPU % PostgreSQL (shared server)", cpu(orders, "postgres"), cpu(noop, "postgres")),
        (
            "CPU s per unit: worker(s)",
            f"{orders.cpu_seconds_each('engine workers'):.3f}",
            f"{noop.cpu_seconds_each('no-op workers'):.3f}",
        ),
        (
            "CPU s per unit: Temporal dev server",
            f"{orders.cpu_seconds_each('temporal'):.3f}",
            f"{noop.cpu_seconds_each('temporal'):.3f}",
        ),
        *(
            (
                f"{name} per unit (with its child)",
                str(orders.shape.get(name, "-")),
                str(noop.shape.get(name, "-")),
            )
            for name in SHAPE
        ),
        (
            f"CPU % machine (of {100 * (os.cpu_count() or 1)})",
            f"{orders.machine.percent:.0f}",
            f"{noop.machine.percent:.0f}",
        ),
    ]
    print(
        f"\nthroughput: {count} orders, {workers} worker process(es), {os.cpu_count()} cores; "
        f"load average {' -> '.join(loads)}"
    )
    print(
        f"no-op shape: {len(STEPS)} sequential activities, {NOTIFICATIONS} background "
        "notifications, 1 child started"
    )
    print(f"{'what':<44}{'orders':>10}{'no-op':>10}")
    for what, measured, ceiling in rows:
        print(f"{what:<44}{measured:>10}{ceiling:>10}")
    missed = ratio < TARGET_RATIO
    flag = "   <-- MISSED" if missed else ""
    print(f"{'ratio orders / no-op':<44}{ratio:>10.2f}{'>= 0.80':>10}{flag}")
    incomplete = len(orders.done) < count or len(noop.done) < count
    if incomplete:
        print("not every order / no-op workflow got there   <-- MISSED")
    return 1 if missed or incomplete or orders.failed else 0
