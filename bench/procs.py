"""The processes a benchmark starts: their CPU and memory (psutil), and where their logs go.

CPU is in percent of one core (a 2-core machine can show up to 200 %), from the
processes' own CPU times (user + system, children included) between two
readings, so sampling never misses a burst. The Temporal dev server is the
``temporal`` child of this process (``WorkflowEnvironment.start_local``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.stack import Stack


def log_to_file(path: Path) -> None:
    """The API and the sandbox serve in threads of this process and log to its stdout: send
    their lines to ``path`` so the table stays readable."""
    stream = path.open("a")
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(stream)


def temporal_server(stack: Stack) -> psutil.Process:
    """The dev server of ``stack``: our child whose command line is ``start-dev --port N``."""
    port = stack.settings.temporal_address.rsplit(":", 1)[1]
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if "start-dev" in cmdline and port in cmdline:
            return child
    raise RuntimeError(f"no Temporal dev server on port {port} among this process's children")


def postgres_processes() -> list[psutil.Process]:
    """Every PostgreSQL backend on the machine (shared with whoever else uses the server)."""
    found = []
    for process in psutil.process_iter(["name"]):
        if (process.info["name"] or "").startswith("postgres"):
            found.append(process)
    return found


def _cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system + times.children_user + times.children_system)


@dataclass
class CpuMeter:
    """CPU % of a group of processes between :meth:`start` and :meth:`stop`."""

    processes: list[psutil.Process]
    _start: dict[int, float] = field(default_factory=dict)
    _wall: float = 0.0
    percent: float = 0.0
    seconds: float = 0.0  # CPU seconds used

    def start(self) -> None:
        self._wall = time.monotonic()
        self._start = {p.pid: _cpu_seconds(p) for p in self.processes}

    def stop(self) -> float:
        wall = time.monotonic() - self._wall
        used = sum(_cpu_seconds(p) - self._start.get(p.pid, 0.0) for p in self.processes)
        self.seconds = used
        self.percent = 100 * used / wall if wall > 0 else 0.0
        return self.percent


@dataclass
class MachineMeter:
    """Busy % of the whole machine (every core; 100 % per core) between start and stop."""

    _start: tuple[float, float] = (0.0, 0.0)
    percent: float = 0.0

    @staticmethod
    def _read() -> tuple[float, float]:
        times = psutil.cpu_times()
        return times.idle + getattr(times, "iowait", 0.0), sum(times)

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        idle, total = self._read()
        spent = total - self._start[1]
        busy = spent - (idle - self._start[0])
        self.percent = 100 * (os.cpu_count() or 1) * busy / spent if spent > 0 else 0.0
        return self.percent


def meters(groups: dict[str, Iterable[psutil.Process]]) -> dict[str, CpuMeter]:
    return {name: CpuMeter(list(processes)) for name, processes in groups.items()}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def wait_quiet(
    processes: list[psutil.Process], percent: float = 10, window: float = 2, timeout: float = 60
) -> float:
    """Wait until ``processes`` use under ``percent`` CPU over ``window`` seconds (at most
    ``timeout``); the seconds waited."""
    started = time.monotonic()
    meter = CpuMeter(processes)
    while time.monotonic() - started < timeout:
        meter.start()
        await asyncio.sleep(window)
        if meter.stop() < percent:
            break
    return time.monotonic() - started


def positive(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number
