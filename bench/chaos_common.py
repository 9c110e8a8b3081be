"""What every scenario of ``bench/chaos.py`` shares: progress lines, the table (:class:`Report`),
waiting for a check, HTTP exchanges and their tallies, the database read directly, a server cut
at a proxy (:class:`Cuttable`) and the worker processes' state.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from sqlalchemy.engine import make_url

from bench.stack import ROOT, Stack
from bench.tcp_proxy import TcpProxy

LOGS = ROOT / ".data" / "bench"

PAID = frozenset({"paid", "fulfilling", "shipped", "delivered"})
ORDER_ENDED = PAID | {"failed", "cancelled", "refunded"}
LABELLED = frozenset({"fulfilling", "shipped", "delivered"})
PAYOUT_ENDED = frozenset({"released", "refunded", "failed"})
DEPLOY_ENDED = frozenset({"succeeded", "rolled_back", "failed"})
PROBLEM_JSON = "application/problem+json"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the table ------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    what: str
    expected: str
    measured: str
    ok: bool


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)

    def add(
        self, scenario: str, what: str, expected: object, measured: object, ok: bool | None = None
    ) -> None:
        if ok is None:
            ok = str(measured) == str(expected)
        self.rows.append(Row(scenario, what, str(expected), str(measured), ok))
        say(f"{'ok ' if ok else 'OFF'} {scenario}: {what}: {measured} (expected {expected})")

    def print(self, out: TextIO) -> None:
        header = Row("scenario", "what was checked", "expected", "measured", True)
        widths = [
            max(len(getattr(r, name)) for r in [header, *self.rows])
            for name in ("scenario", "what", "expected", "measured")
        ]

        def line(r: Row, ok: str) -> str:
            cells = [r.scenario, r.what, r.expected, r.measured]
            return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + f" | {ok}"

        lines = [line(header, "ok"), "-|-".join("-" * w for w in widths) + "-|---"]
        lines += [line(r, "yes" if r.ok else "NO") for r in self.rows]
        lines += [""] + [f"{name}: {seconds:.0f} s" for name, seconds in self.durations.items()]
        lines.append(f"{os.cpu_count()} cores; logs under {LOGS.relative_to(ROOT)}/")
        out.write("\n" + "\n".join(lines) + "\n")
        out.flush()

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)


def listed(items: list[str], shown: int = 3) -> str:
    if not items:
        return "0"
    more = f" …+{len(items) - shown}" if len(items) > shown else ""
    return f"{len(items)}: {', '.join(items[:shown])}{more}"


# --- waiting, and HTTP exchanges and their tallies -------------------------------------------


async def until(check: Callable[[], Awaitable[Any]], timeout: float, interval: float = 1.0) -> Any:
    """``check()``'s first truthy value, or its last value when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


@dataclass
class Answer:
    """One HTTP exchange: status (None when no answer came), content type, seconds."""

    status: int | None
    content_type: str
    seconds: float
    error: str = ""
    body: Any = None

    def __str__(self) -> str:
        if self.status is None:
            return f"no answer ({self.error}) after {self.seconds:.1f} s"
        kind = "problem+json" if self.content_type.startswith(PROBLEM_JSON) else self.content_type
        return f"{self.status} {kind} in {self.seconds:.2f} s"

    def is_problem(self, status: int) -> bool:
        return self.status == status and self.content_type.startswith(PROBLEM_JSON)


async def exchange(request: Awaitable[httpx.Response]) -> Answer:
    began = time.monotonic()
    try:
        r = await request
    except httpx.HTTPError as err:
        return Answer(None, "", time.monotonic() - began, type(err).__name__)
    try:
        body = r.json()
    except ValueError:
        body = r.text[:200]
    return Answer(
        r.status_code, r.headers.get("content-type", ""), time.monotonic() - began, body=body
    )


def tally(answers: list[Answer]) -> str:
    """``500 problem+json x12, no answer (ReadTimeout) x1``."""
    counted = Counter(
        f"no answer ({a.error})"
        if a.status is None
        else f"{a.status} {'problem+json' if a.content_type.startswith(PROBLEM_JSON) else 'json'}"
        for a in answers
    )
    return ", ".join(f"{what} x{n}" for what, n in counted.most_common()) or "none"


# --- PostgreSQL and Redis, directly -------------------------------------------------------------


class Database:
    """The stack's database, read directly (not through the proxy), for the checks."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        for attempt in range(10):
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=5
                ) as conn:
                    cursor = await conn.execute(sql, params)
                    return await cursor.fetchall()
            except psycopg.OperationalError:
                if attempt == 9:
                    raise
                await asyncio.sleep(1)
        raise AssertionError("unreachable")


class Cuttable:
    """``running_stack(through=...)``: the engine's URL of one server (``postgresql`` or
    ``redis``) goes through a :class:`TcpProxy`; the bench keeps the direct URL."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.proxy: TcpProxy | None = None
        self.direct = ""

    def __call__(self, url: str) -> str:
        if not url.startswith(self.scheme):
            return url
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise RuntimeError(f"{self.scheme} must be a TCP server to be cut: {url}")
        self.direct = url
        self.proxy = TcpProxy(parts.hostname, parts.port, name=self.scheme)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.proxy.port}"))

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()

    @property
    def cut(self) -> TcpProxy:
        assert self.proxy is not None, "the stack did not route through the proxy"
        return self.proxy


def worker_alive(stack: Stack) -> bool:
    return bool(stack.workers) and stack.workers[-1].poll() is None


def fresh_logs(log_dir: Path) -> None:
    """Worker logs of earlier runs go (they are appended to, and read for "worker started")."""
    for old in log_dir.glob("worker-*.log"):
        old.unlink()


async def worker_started(stack: Stack, timeout: float = 120) -> bool:
    """Whether the newest worker logged "worker started" (connected, polling) in time; on a
    loaded machine its imports alone can take seconds."""
    index = len(stack.workers) - 1
    log = stack.log_dir / f"worker-{index}.log"
    process = stack.workers[index]

    async def started() -> bool | None:
        if log.exists() and b'"worker started"' in log.read_bytes():
            return True
        return None if process.poll() is None else False

    return bool(await until(started, timeout, 0.2))


def workers_that_died(stack: Stack) -> list[int]:
    """Exit codes of workers that ended without our kill -9 (SIGKILL: -9) or stop."""
    return [p.returncode for p in stack.workers if p.returncode not in (None, -9, 0, -15)]
