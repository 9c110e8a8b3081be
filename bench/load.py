"""Load generators for the benchmarks, and the table they print.

- :func:`run_hey`: GETs with ``hey`` (a Go binary, so the client costs little CPU next to the
  server), at a fixed rate (``-q`` is per connection: ``rate / conns`` each) or closed-loop
  (no ``-q``: as fast as ``conns`` connections go). Parsed from hey's summary, which also
  counts transport errors (its ``-o csv`` drops them). hey's rate is a ticker per connection:
  a request slower than ``conns / rate`` delays that connection's next one, so a slow server
  shows up as a missed rate rather than as queueing.
- :func:`open_loop`: requests that differ each time (a fresh ``Idempotency-Key``, a different
  signed webhook), which hey cannot send: sent from this process (not the server's) by a lean
  HTTP/1.1 client (:class:`LeanHttp`; httpx took over half a core at 150 requests a second),
  each at ``t0 + i / rate`` whatever the earlier ones are doing. Latency is from the moment
  it is sent; how late the sender itself was is reported as ``lag``.

:func:`ensure_hey` finds the binary or installs the Debian package; without it a benchmark
exits 2.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.lean_http import Answer, HttpError, LeanHttp

# A fixed-rate run counts as having reached its rate within this much (hey's tickers start
# one interval late, so 15 s at 500/s ends near 499.3/s).
RATE_TOLERANCE = 0.99


@dataclass
class LoadResult:
    """One run: answers by status, transport errors, latencies (seconds)."""

    what: str
    rate_asked: float | None  # None: closed-loop (as fast as it goes)
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    p50: float | None = None
    p99: float | None = None
    lag_p99: float | None = None  # open loop: how late the sender sent, 99th percentile
    cpu: CpuUse | None = None  # the server's and the machine's, while it ran

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def achieved(self) -> float:
        """Answers per second (any status)."""
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    @property
    def not_2xx(self) -> int:
        """Answers outside 2xx plus requests that got no answer at all."""
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300) + sum(
            self.errors.values()
        )

    def reached_rate(self) -> bool:
        return self.rate_asked is None or self.achieved >= RATE_TOLERANCE * self.rate_asked


# ------------------------------------------------------------------------ CPU


@dataclass(frozen=True)
class CpuUse:
    """Cores busy on average while a run went (1.0 = one core all the time)."""

    server: float  # the server process and its children (uvicorn --workers)
    machine: float  # every core of the machine, whoever ran on them
    ours: dict[str, float]  # this process's children by role (api, worker, temporal, ...)
    cores: int

    @property
    def others(self) -> float:
        """What ran on the machine that this benchmark did not start."""
        return max(0.0, self.machine - sum(self.ours.values()))

    def breakdown(self) -> str:
        parts = [f"{name} {cores * 100:.0f} %" for name, cores in self.ours.items()]
        return ", ".join([*parts, f"not ours {self.others * 100:.0f} %"])


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3 is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def _ticks(pid: int, *, reaped: bool = False) -> int:
    """utime + stime of ``pid`` and its live descendants (and, with ``reaped``, of its
    children that exited and were waited for, e.g. a finished hey), in clock ticks."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0
    total = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped:
        total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total + sum(_ticks(child) for child in _children(pid))


def _role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    line = b" ".join(argv).decode(errors="replace")
    for marker, role in (
        ("api.app", "api"),
        ("profile_api", "api"),
        ("sandbox.app", "sandbox"),
        ("worker.py", "worker"),
        ("temporal", "temporal"),
        ("hey", "hey"),
    ):
        if marker in line:
            return role
    return Path(argv[0].decode(errors="replace")).name or str(pid)


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot."""
    line = Path("/proc/stat").read_text().split("\n", 1)[0]
    values = [int(v) for v in line.split()[1:9]]  # user .. steal (guest is inside user)
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _snapshot(server: int | None) -> tuple[float, int, tuple[int, int], dict[str, int]]:
    me = os.getpid()
    roles: dict[str, int] = {}
    for child in _children(me):
        role = _role(child)
        roles[role] = roles.get(role, 0) + _ticks(child)
    # This process itself, with the children it already reaped (a finished hey).
    own = _ticks(me, reaped=True) - sum(_ticks(c) for c in _children(me))
    roles["bench (+hey)"] = roles.pop("hey", 0) + own
    server_ticks = _ticks(server) if server else 0
    return time.perf_counter(), server_ticks, _machine_ticks(), roles


async def measured(server: int | None, run: Awaitable[LoadResult]) -> LoadResult:
    """``run``, with the CPU the ``server`` process (with its children), each process this
    benchmark started, and the whole machine used meanwhile."""
    hz = os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    t0, server0, machine0, roles0 = _snapshot(server)
    result = await run
    t1, server1, machine1, roles1 = _snapshot(server)
    wall = max(t1 - t0, 1e-9)
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    result.cpu = CpuUse(
        server=(server1 - server0) / hz / wall if server else float("nan"),
        machine=busy / total * cores if total else float("nan"),
        ours={
            role: max(0, roles1.get(role, 0) - roles0.get(role, 0)) / hz / wall
            for role in sorted(set(roles0) | set(roles1))
        },
        cores=cores,
    )
    return result


# ------------------------------------------------------------------------ hey


def ensure_hey() -> str:
    """The ``hey`` binary; installed with apt-get when missing. Exits 2 when there is none."""
    found = shutil.which("hey")
    if found:
        return found
    print("hey not found: apt-get install -y hey ...", flush=True)
    try:
        subprocess.run(
            "apt-get update -qq && apt-get install -y -qq hey",
            shell=True,
            check=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as error:
        print(f"could not install hey ({error}); install it (Debian package 'hey') and rerun")
    found = shutil.which("hey")
    if not found:
        print("no load generator: the Debian package 'hey' is needed", flush=True)
        sys.stdout.flush()
        os._exit(2)
    return found


_TOTAL = re.compile(r"^\s*Total:\s+([\d.]+) secs", re.MULTILINE)
_PERCENTILE = re.compile(r"^\s*(\d+)% in ([\d.]+) secs", re.MULTILINE)
_STATUS = re.compile(r"^\s*\[(\d+)\]\s+(\d+) responses", re.MULTILINE)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.+)$", re.MULTILINE)


def parse_hey(what: str, rate: float | None, output: str) -> LoadResult:
    """hey's summary: total time, latency distribution, status codes, errors."""
    total = _TOTAL.search(output)
    if total is None:
        raise RuntimeError(f"hey printed no summary:\n{output[-2000:]}")
    result = LoadResult(what=what, rate_asked=rate, seconds=float(total.group(1)))
    percentiles = {int(p): float(s) for p, s in _PERCENTILE.findall(output)}
    result.p50, result.p99 = percentiles.get(50), percentiles.get(99)
    statuses, _, errors = output.partition("Error distribution:")
    for code, count in _STATUS.findall(statuses.split("Status code distribution:")[-1]):
        result.statuses[int(code)] += int(count)
    for count, message in _ERROR.findall(errors):
        result.errors[message.strip()[:120]] += int(count)
    return result


async def run_hey(
    what: str,
    url: str,
    *,
    seconds: float,
    conns: int,
    rate: float | None = None,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """GET ``url`` for ``seconds`` over ``conns`` connections, at ``rate`` in all (None: as fast
    as they go)."""
    command = [ensure_hey(), "-z", f"{seconds:g}s", "-c", str(conns), "-t", "10"]
    if rate is not None:
        command += ["-q", f"{rate / conns:g}"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    process = await asyncio.create_subprocess_exec(
        *command, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    return parse_hey(what, rate, output.decode(errors="replace"))


# ------------------------------------------------------------------ open loop


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


Send = Callable[[LeanHttp, int], Awaitable[Answer]]


async def open_loop(
    what: str,
    base_url: str,
    send: Send,
    *,
    rate: float,
    count: int,
    timeout: float = 10,
    on_answer: Callable[[int, Answer], None] | None = None,
) -> LoadResult:
    """``send(http, i)`` for i in 0..count-1 at ``t0 + i / rate``, not waiting for earlier
    answers (a new connection when none is idle). ``on_answer(i, answer)`` sees every
    answer."""
    latencies: list[float] = []
    lags: list[float] = []
    result = LoadResult(what=what, rate_asked=rate, seconds=0.0)
    http = LeanHttp(base_url, timeout=timeout)

    async def one(i: int, due: float) -> None:
        started = time.perf_counter()
        lags.append(started - due)
        try:
            answer = await send(http, i)
        except HttpError as error:
            result.errors[str(error)] += 1
            return
        latencies.append(time.perf_counter() - started)
        result.statuses[answer.status] += 1
        if on_answer is not None:
            on_answer(i, answer)

    try:
        t0 = time.perf_counter() + 0.05
        tasks = []
        for i in range(count):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - t0
    finally:
        await http.aclose()
    result.p50, result.p99 = percentile(latencies, 50), percentile(latencies, 99)
    result.lag_p99 = percentile(lags, 99)
    return result


# ---------------------------------------------------------------------- table


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


@dataclass
class Row:
    """A line of the table: a run, its target in words, and whether it was met (None: no
    target)."""

    result: LoadResult
    target: str = ""
    met: bool | None = None


def print_table(rows: Sequence[Row]) -> None:
    header = (
        f"{'what':<34}{'rate asked':>11}{'achieved':>10}{'p50':>10}{'p99':>10}"
        f"{'non-2xx':>9}  {'target':<34}{'met':>4}{'API CPU':>9}{'machine':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        r = row.result
        asked = "max" if r.rate_asked is None else f"{r.rate_asked:g}/s"
        met = "" if row.met is None else ("yes" if row.met else "NO")
        server = "-" if r.cpu is None else f"{r.cpu.server * 100:.0f} %"
        machine = "-" if r.cpu is None else f"{r.cpu.machine / r.cpu.cores * 100:.0f} %"
        print(
            f"{r.what:<34}{asked:>11}{r.achieved:>8.1f}/s{ms(r.p50):>10}{ms(r.p99):>10}"
            f"{r.not_2xx:>9}  {row.target:<34}{met:>4}{server:>9}{machine:>9}"
        )
    for row in rows:
        r = row.result
        if r.errors:
            print(f"  {r.what}: errors {dict(r.errors.most_common(3))}")
        odd = {code: n for code, n in r.statuses.items() if not 200 <= code < 300}
        if odd:
            print(f"  {r.what}: statuses {dict(odd)}")
        if r.lag_p99 is not None and r.lag_p99 > 0.005:
            print(f"  {r.what}: the sender itself was late by up to {ms(r.lag_p99)} (p99)")
    for row in rows:
        if row.result.cpu is not None:
            print(f"  {row.result.what}: CPU {row.result.cpu.breakdown()}")


TABLE_NOTES = (
    "API CPU: CPU time of the API process (with its --workers) per second of the run, 100 % ="
    " one core busy; machine: all cores busy, 100 % = every core (whatever ran on them).\n"
    "CPU lines: the same per process this benchmark started, 100 % = one core; 'not ours' is"
    " the rest of the machine (other people's work)."
)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
