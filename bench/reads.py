"""Read and placement latency of the orders API, at fixed rates, against the API in a process
of its own (uvicorn, as ``make run`` starts it).

    .venv/bin/python -m bench.reads [--duration 15] [--api-workers 1] [--orders 200]
                                    [--only a,b,c,d]

Starts its own stack (``bench/stack.py`` with ``api_processes``): Temporal dev server, a fresh
database, Redis, the sandbox and the API each a uvicorn process, the worker. Seeds a merchant,
two products and ``--orders`` orders (placed, paid, labelled: each has its events), waits
until they stop changing (the sandbox clock stands still, so they rest at ``fulfilling``),
then measures, each for ``--duration`` seconds:

- (a) ``GET /api/v1/orders/{id}`` at 500/s over 10 connections: p99 < 20 ms, >= 500/s;
- (b) ``GET /api/v1/orders?limit=20`` at 300/s over 10 connections: p99 < 40 ms;
- (c) ``GET /livez`` as fast as 10 connections go (reference: the server with no work);
- (d) ``POST /api/v1/orders`` at 50/s, open loop, worker running: p99 < 50 ms;

plus (a) and (b) closed-loop (as fast as 10 connections go; no target). GETs are sent by
``hey``, POSTs (a fresh ``Idempotency-Key`` each) from this process (``bench/load.py``).
A fixed rate counts as reached at 99 % of it; every target also needs every answer 2xx.
Prints a table; exits 1 when a target is missed, 2 when there is no ``hey``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.lean_http import Answer, LeanHttp
from bench.load import (
    TABLE_NOTES,
    LoadResult,
    Row,
    ensure_hey,
    load_average,
    measured,
    open_loop,
    print_table,
    run_hey,
)
from bench.stack import ROOT, Stack, running_stack, wait_ready
from bench.storefront import AU_SHIP_FROM as SHIP_FROM
from devstack.demo import SAMPLE_ADDRESS as ADDRESS

# Statuses an order of this run moves through on its own (the clock stands still after).
MOVING = {"pending", "awaiting_payment", "paid"}
CONNS = 10


def order_body() -> dict[str, Any]:
    return {
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "items": [{"sku": "MUG-1", "quantity": 2}, {"sku": "TEE-1", "quantity": 1}],
        "shipping_address": ADDRESS,
        "payment_method": "pm_card_visa",
    }


async def seed_merchant(stack: Stack, http: httpx.AsyncClient) -> dict[str, str]:
    r = await http.post(
        f"{stack.api}/api/v1/merchants",
        json={"name": "Bench Shop", "email": "bench@example.com", "ship_from": SHIP_FROM},
        headers=stack.ops,
    )
    r.raise_for_status()
    headers = {"Authorization": f"Bearer {r.json()['api_key']}"}
    for sku, price in (("MUG-1", 1800), ("TEE-1", 2500)):
        r = await http.post(
            f"{stack.api}/api/v1/products",
            json={"sku": sku, "name": sku, "price": price, "currency": "USD", "stock": 10**6},
            headers=headers,
        )
        r.raise_for_status()
    return headers


async def seed_orders(
    stack: Stack, http: httpx.AsyncClient, headers: dict[str, str], count: int
) -> list[str]:
    async def place() -> str:
        r = await http.post(
            f"{stack.api}/api/v1/orders",
            json=order_body(),
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        if r.status_code != 202:
            raise RuntimeError(f"placing an order answered {r.status_code}: {r.text[:300]}")
        order_id: str = r.json()["order_id"]
        return order_id

    ids: list[str] = []
    for start in range(0, count, 10):
        ids += await asyncio.gather(*(place() for _ in range(min(10, count - start))))
    return ids


async def statuses(stack: Stack, http: httpx.AsyncClient, headers: dict[str, str]) -> Counter[str]:
    counted: Counter[str] = Counter()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["starting_after"] = cursor
        r = await http.get(f"{stack.api}/api/v1/orders", params=params, headers=headers)
        r.raise_for_status()
        page = r.json()
        counted.update(o["status"] for o in page["data"])
        if not page["has_more"]:
            return counted
        cursor = page["data"][-1]["order_id"]


async def wait_quiet(
    stack: Stack, http: httpx.AsyncClient, headers: dict[str, str], timeout: float = 300
) -> Counter[str]:
    """Until no order is still moving and the counts held still for three polls."""
    deadline = time.monotonic() + timeout
    last: Counter[str] = Counter()
    still = 0
    while time.monotonic() < deadline:
        counted = await statuses(stack, http, headers)
        still = still + 1 if counted == last else 0
        last = counted
        if still >= 2 and not MOVING & set(counted):
            return counted
        await asyncio.sleep(1)
    raise RuntimeError(f"the seeded orders never settled: {dict(last)}")


async def main(
    duration: float, api_workers: int, orders: int, only: set[str], profile: Path | None
) -> int:
    ensure_hey()
    started = time.monotonic()
    async with (
        running_stack(
            ROOT / ".data" / "bench" / "reads",
            api_processes=api_workers,
            api_profile=profile,
            sandbox_clock_pace=0,  # parcels stay put: the seeded orders stop changing
        ) as stack,
        httpx.AsyncClient(timeout=30) as http,
    ):
        stack.start_worker()
        await wait_ready(stack, http)
        headers = await seed_merchant(stack, http)
        ids = await seed_orders(stack, http, headers, orders)
        settled = await wait_quiet(stack, http, headers)
        one = (await http.get(f"{stack.api}/api/v1/orders/{ids[0]}", headers=headers)).json()
        print(
            f"seeded {len(ids)} orders in {time.monotonic() - started:.0f} s: {dict(settled)}; "
            f"GET /api/v1/orders/{{id}} answers {len(one['events'])} events",
            flush=True,
        )
        auth = {"Authorization": headers["Authorization"]}
        pid = stack.servers["api"].pid
        rows: list[Row] = []
        loads: list[str] = []

        async def hey(
            what: str, path: str, rate: float | None = None, auth: dict[str, str] | None = auth
        ) -> LoadResult:
            run = run_hey(
                what, stack.api + path, seconds=duration, conns=CONNS, rate=rate, headers=auth
            )
            return await measured(pid, run)

        def record(row: Row) -> None:
            loads.append(f"{row.result.what}: {load_average()}")
            rows.append(row)

        def within(r: LoadResult, p99: float) -> bool:
            return r.p99 is not None and r.p99 < p99 and r.reached_rate() and r.not_2xx == 0

        if "a" in only:
            path = f"/api/v1/orders/{ids[len(ids) // 2]}"
            r = await hey("(a) GET /orders/{id}", path, rate=500)
            record(Row(r, "p99 < 20 ms, >= 500/s, all 2xx", within(r, 0.020)))
            record(Row(await hey("(a) GET /orders/{id} closed loop", path)))
        if "b" in only:
            path = "/api/v1/orders?limit=20"
            r = await hey("(b) GET /orders?limit=20", path, rate=300)
            record(Row(r, "p99 < 40 ms at 300/s, all 2xx", within(r, 0.040)))
            record(Row(await hey("(b) GET /orders closed loop", path)))
        if "c" in only:
            record(Row(await hey("(c) GET /livez closed loop", "/livez", auth=None)))
        if "d" in only:
            body = json.dumps(order_body()).encode()

            async def place(client: LeanHttp, i: int) -> Answer:
                return await client.request(
                    "POST",
                    "/api/v1/orders",
                    {
                        **headers,
                        "Content-Type": "application/json",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                    body,
                )

            count = round(50 * duration)
            run = open_loop("(d) POST /orders (worker on)", stack.api, place, rate=50, count=count)
            r = await measured(pid, run)
            record(Row(r, "p99 < 50 ms at 50/s, all 2xx", within(r, 0.050)))

        print(
            f"\nreads run: {time.monotonic() - started:.0f} s, API: uvicorn process with "
            f"{api_workers} worker(s), {duration:g} s per line, {CONNS} connections "
            "(hey; POST: open loop from the bench process)"
        )
        print_table(rows)
        print(TABLE_NOTES)
        print("\nmachine load when each line ended:")
        for line in loads:
            print(f"  {line}")
        return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per measurement")
    parser.add_argument(
        "--api-workers", type=int, default=1, help="uvicorn --workers of the API process"
    )
    parser.add_argument("--orders", type=int, default=200, help="orders seeded before reading")
    parser.add_argument(
        "--only", default="a,b,c,d", help="a subset of a,b,c,d (e.g. 'a,d' or 'ab')"
    )
    parser.add_argument(
        "--profile-api",
        type=Path,
        metavar="PATH",
        help="run the API under pyinstrument (pip install pyinstrument; one worker), "
        "its text report written to PATH at the end",
    )
    args = parser.parse_args()
    chosen = {c for c in args.only.lower() if c in "abcd"}
    if not chosen or args.api_workers < 1:
        parser.error("--only takes letters from a,b,c,d; --api-workers must be >= 1")
    if args.profile_api and args.api_workers != 1:
        parser.error("--profile-api profiles one API process: --api-workers 1")
    try:
        status = asyncio.run(
            main(args.duration, args.api_workers, args.orders, chosen, args.profile_api)
        )
    except Exception:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # temporalio can abort the interpreter at exit (sdk-python #300)
