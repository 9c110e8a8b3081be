"""Reliability (issue 11): the engine with its worker killed, and with Temporal, PostgreSQL
and Redis taken away in turn. Nothing may be lost, done twice or half-written.

    .venv/bin/python -m bench.chaos [--quick] [--only kills,temporal-down,postgres-down,redis-down]
        [--temporal-down-seconds 60] [--postgres-down-seconds 30] [--redis-down-seconds 30]

Scenarios, each on a stack of its own (``bench/stack.py``: Temporal dev server, a fresh
database, Redis, the sandbox and the API in this process, the worker as a subprocess):

- **kills**: storefront orders, marketplace checkouts (held, then paid out) and package
  deployments, while the worker is ``kill -9``-ed at random moments and while a Stripe charge,
  a Stripe transfer or a Cloudflare create is in flight (the sandbox slows those calls down;
  the kill comes when Temporal shows the activity started on the live worker). Then: every
  order paid, every payout released, every deployment succeeded; one charge per order and
  checkout, one transfer per payout, each Cloudflare resource made once; the books reconcile.
- **temporal-down**: TikTok orders arrive (the sandbox sends their signed webhooks) while the
  Temporal server is stopped for ``--temporal-down-seconds`` and started again on the same port
  and SQLite file. Every webhook is answered 2xx; afterwards every order gets its workflow and
  label (the outbox relay re-drives), then ships.
- **postgres-down**: the engine reaches PostgreSQL through a proxy this script cuts (the
  machine's server is never touched). While it is cut: orders are refused 503 problem+json,
  reads 503, ``/readyz`` 503, a webhook is not acknowledged; afterwards the refused orders do
  not exist and the accepted ones are whole (items, event, outbox row) and get paid. Then the
  proxy swallows packets instead (a hung server): answers must still come, in bounded time.
- **redis-down**: the same with Redis. Rate limits are off and orders still placed (README,
  Security); a deployment in flight waits and finishes; a deployment whose token Redis lost
  asks for a new one and finishes once given it; a new deployment is refused cleanly.

This module runs them; each is a module of its own (``bench/chaos_kills.py``,
``chaos_temporal.py``, ``chaos_postgres.py``, ``chaos_redis.py``), and what they share is in
``bench/chaos_common.py`` (the table, checks, servers cut at a proxy, the workers) and
``bench/chaos_engine.py`` (the engine through its API).

Sizes: 200 orders, 50 checkouts, 20 deployments and 50 kills; outages of 60 s (Temporal) and
30 s (PostgreSQL, Redis). ``--quick``: 20, 6, 3 and 8; 20 s and 12 s. Every stack's database is
on a PostgreSQL of the run's own (``bench/own_postgres.py``; ``--postgres shared`` uses
``BENCH_POSTGRES_URL``); Redis is the machine's (``BENCH_REDIS_URL``). The server a scenario
takes away is reached through a proxy (``bench/tcp_proxy.py``) or, for Temporal, restarted.

Prints one table (scenario | what was checked | expected | measured | ok) on stdout and exits 1
when any row is off; progress goes to stderr, and whatever else writes to stdout (the
in-process API's JSON logs) to ``.data/bench/chaos-stdout.log``. Logs of the workers and the
Temporal server: ``.data/bench/chaos-<scenario>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

from bench import stack as bench_stack
from bench.chaos_common import LOGS, Report, say
from bench.chaos_kills import kills
from bench.chaos_postgres import postgres_down
from bench.chaos_redis import redis_down
from bench.chaos_temporal import temporal_down
from bench.own_postgres import own_postgres

SCENARIOS = ("kills", "temporal-down", "postgres-down", "redis-down")


# --- main -----------------------------------------------------------------------------------

RUNS: dict[str, Callable[[argparse.Namespace, Report], Awaitable[None]]] = {
    "kills": kills,
    "temporal-down": temporal_down,
    "postgres-down": postgres_down,
    "redis-down": redis_down,
}


def stdout_for_the_table() -> TextIO:
    """The real stdout, for the table; whatever else writes to stdout (the in-process API's
    JSON logs, the Temporal dev server's banner) goes to a file from now on."""
    LOGS.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    table = os.fdopen(os.dup(1), "w")
    with (LOGS / "chaos-stdout.log").open("ab") as noise:
        os.dup2(noise.fileno(), 1)
    return table


async def main(args: argparse.Namespace) -> int:
    table = stdout_for_the_table()
    report = Report()
    with contextlib.ExitStack() as servers:
        if args.postgres == "own":
            # Every stack's fresh database on a server of our own (bench/own_postgres.py).
            bench_stack.POSTGRES_URL = servers.enter_context(own_postgres())
        await run_scenarios(args, report)
    report.print(table)
    return 0 if report.ok else 1


async def run_scenarios(args: argparse.Namespace, report: Report) -> None:
    for name in args.only:
        began = time.monotonic()
        say(f"scenario {name}{' (quick)' if args.quick else ''}")
        try:
            await RUNS[name](args, report)
        except Exception as err:
            report.add(
                name, "scenario ran to the end", "yes", f"no: {type(err).__name__}: {err}", False
            )
            import traceback

            traceback.print_exc()
        report.durations[name] = time.monotonic() - began


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, short outages")
    parser.add_argument(
        "--only",
        type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
        default=list(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--postgres",
        choices=("own", "shared"),
        default="own",
        help="own: a PostgreSQL of this run's own (default); shared: BENCH_POSTGRES_URL",
    )
    parser.add_argument("--temporal-down-seconds", type=float, default=None)
    parser.add_argument("--postgres-down-seconds", type=float, default=None)
    parser.add_argument("--redis-down-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    unknown = [x for x in args.only if x not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown}; choose from {', '.join(SCENARIOS)}")
    return args


if __name__ == "__main__":
    status = asyncio.run(main(parse()))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # temporalio can abort the interpreter at exit (sdk-python #300)
