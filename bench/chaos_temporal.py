"""Scenario ``temporal-down`` of ``bench/chaos.py``: TikTok orders arrive while the Temporal
server is stopped and started again; every webhook answered, every order labelled and shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from temporalio.service import RPCError

from bench.chaos_common import (
    LABELLED,
    LOGS,
    PAID,
    Database,
    Report,
    exchange,
    fresh_logs,
    listed,
    say,
    tally,
    until,
    worker_started,
)
from bench.chaos_engine import SKU, new_shop, place_order
from bench.stack import running_stack, wait_ready
from devstack.demo import SAMPLE_ADDRESS as ADDRESS


async def temporal_down(args: argparse.Namespace, report: Report) -> None:
    s = "temporal-down"
    down = args.temporal_down_seconds or (20 if args.quick else 60)
    rate = 1.0 if args.quick else 2.0  # TikTok orders a second
    lead, tail = (5, 5) if args.quick else (10, 10)
    log_dir = LOGS / "chaos-temporal"
    db_file = log_dir / "temporal.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    fresh_logs(log_dir)
    async with (
        running_stack(
            log_dir,
            temporal_db=db_file,
            sticky_schedule_to_start_seconds=1.0,
            worker_metrics_port=0,
        ) as stack,
        httpx.AsyncClient(timeout=30) as http,
    ):
        server = stack.temporal_server
        assert server is not None
        stack.start_worker()
        await wait_ready(stack, http)
        if not await worker_started(stack):
            raise RuntimeError("the worker did not start")
        running_worker = stack.workers[-1]
        shop_id = "7494" + "".join(random.choices("0123456789", k=15))
        shop = await new_shop(stack, http, tiktok_shop_id=shop_id)
        created: list[tuple[str, str]] = []  # (TikTok order id, phase)
        phase = "before"
        stop = asyncio.Event()

        async def tiktok_orders() -> None:
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                began = loop.time()
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.post(
                        f"{stack.sandbox}/_sandbox/tiktok/orders",
                        json={
                            "shop_id": shop_id,
                            "items": [{"sku": SKU, "quantity": 1, "price": 2400}],
                            "address": ADDRESS,
                        },
                    )
                    if r.status_code == 201:
                        created.append((r.json()["order_id"], phase))
                await asyncio.sleep(max(0.0, 1 / rate - (loop.time() - began)))

        load = asyncio.create_task(tiktok_orders())
        await asyncio.sleep(lead)
        phase = "down"
        server.stop()
        stopped_at = time.monotonic()
        say(f"Temporal stopped for {down} s")
        await asyncio.sleep(min(3, down / 3))
        ready_down = await exchange(http.get(f"{stack.api}/readyz"))
        storefront_down = [
            await exchange(place_order(stack, http, shop, uuid.uuid4().hex)) for _ in range(3)
        ]
        # A worker (re)started while Temporal is down, as after a deploy or a crash.
        late_worker = stack.start_worker()
        await asyncio.sleep(max(0.0, down - (time.monotonic() - stopped_at)))
        alive_through = running_worker.poll() is None
        late_alive = late_worker.poll() is None
        late_exit = late_worker.returncode
        phase = "after"
        await server.start()
        back_at = time.monotonic()
        say(f"Temporal back after {back_at - stopped_at:.0f} s")
        db = Database(stack.settings.database_url)

        async def outbox_drained() -> float | None:
            """Seconds from Temporal's return until no outbox row waits (the relay backs off
            while Temporal is down: 1, 2, 4 … s, at most 300 s, per row)."""
            pending = await db.rows("SELECT count(*) FROM outbox WHERE dispatched_at IS NULL")
            return time.monotonic() - back_at if pending[0][0] == 0 and stop.is_set() else None

        await asyncio.sleep(tail)
        stop.set()
        await load
        drained = asyncio.create_task(until(outbox_drained, timeout=300, interval=0.5))
        if running_worker.poll() is not None and late_worker.poll() is not None:
            say("no worker survived the outage; starting another to measure the rest")
            stack.start_worker()

        ids = [i for i, _ in created]
        in_phase = Counter(p for _, p in created)

        async def orders_by_tiktok_id() -> dict[str, dict[str, Any]]:
            found: dict[str, dict[str, Any]] = {}
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 100, "source": "tiktok"}
                if cursor:
                    params["starting_after"] = cursor
                page = (
                    await http.get(
                        f"{stack.api}/api/v1/orders", params=params, headers=shop.headers
                    )
                ).json()
                found.update({o["external_id"]: o for o in page["data"]})
                if not page["has_more"]:
                    return found
                cursor = page["data"][-1]["order_id"]

        def labelled(order: dict[str, Any] | None) -> bool:
            return bool(
                order
                and order["status"] in LABELLED
                and (order.get("shipment") or {}).get("label_url")
            )

        async def all_labelled() -> bool:
            found = await orders_by_tiktok_id()
            done = sum(labelled(found.get(i)) for i in ids)
            say(f"TikTok orders labelled: {done}/{len(ids)}")
            return done == len(ids)

        everything = await until(all_labelled, timeout=300 if args.quick else 600, interval=3)
        recovered = time.monotonic() - back_at
        await http.post(f"{stack.sandbox}/_sandbox/clock/advance", json={"seconds": 2 * 3600})

        async def all_shipped() -> bool:
            found = await orders_by_tiktok_id()
            return all((found.get(i) or {}).get("status") in {"shipped", "delivered"} for i in ids)

        await until(all_shipped, timeout=240, interval=3)
        found = await orders_by_tiktok_id()
        deliveries = (await http.get(f"{stack.sandbox}/_sandbox/tiktok/deliveries")).json()
        ours = [d for d in deliveries if d["shop_id"] == shop_id]
        phase_of = dict(created)
        answered_down = [d for d in ours if phase_of.get(d["order_id"]) == "down"]
        not_2xx = [d for d in ours if not 200 <= (d["response_status"] or 0) < 300]
        workflows = 0
        for tiktok_id in ids:
            with contextlib.suppress(RPCError):
                await stack.temporal.get_workflow_handle(f"tiktok-{shop_id}-{tiktok_id}").describe()
                workflows += 1
        storefront_ids = [a.body["order_id"] for a in storefront_down if a.status == 202]
        paid_later = 0
        for order_id in storefront_ids:
            r = await http.get(f"{stack.api}/api/v1/orders/{order_id}", headers=shop.headers)
            paid_later += r.json().get("status") in PAID
        undelivered, retried = (
            await db.rows(
                "SELECT count(*) FILTER (WHERE dispatched_at IS NULL), max(attempts) FROM outbox"
            )
        )[0]
        drained_after = await drained

        report.add(
            s,
            "Temporal server stopped (SIGTERM), then started on the same port and SQLite file",
            f"{down} s",
            f"{back_at - stopped_at:.0f} s",
            back_at - stopped_at >= down,
        )
        report.add(
            s,
            "TikTok orders created at the sandbox before / during / after",
            "> 0 / > 0 / > 0",
            f"{in_phase['before']} / {in_phase['down']} / {in_phase['after']}",
            all(in_phase[p] > 0 for p in ("before", "down", "after")),
        )
        report.add(
            s,
            "webhook deliveries of the orders created while Temporal was down, answered 2xx",
            f"{len(answered_down)}/{len(answered_down)}",
            f"{sum(200 <= (d['response_status'] or 0) < 300 for d in answered_down)}"
            f"/{len(answered_down)}",
            bool(answered_down)
            and all(200 <= (d["response_status"] or 0) < 300 for d in answered_down),
        )
        report.add(
            s,
            "webhook attempts not answered 2xx (any phase)",
            0,
            listed([f"{d['order_id']}:{d['response_status'] or d['error']}" for d in not_2xx]),
        )
        report.add(
            s,
            "POST /api/v1/orders while Temporal was down",
            "202 x3",
            tally(storefront_down),
            all(a.status == 202 for a in storefront_down),
        )
        report.add(
            s,
            "GET /readyz while Temporal was down",
            "503 problem+json",
            str(ready_down),
            ready_down.is_problem(503),
        )
        report.add(
            s,
            "worker process alive through the outage",
            "yes",
            "yes" if alive_through else "no (it exited)",
        )
        report.add(
            s,
            "worker started while Temporal was down: waits for it",
            "alive",
            "alive" if late_alive else f"exited with {late_exit}",
            late_alive,
        )
        report.add(s, "TikTok orders with a workflow", len(ids), workflows)
        report.add(
            s,
            "TikTok orders saved, labelled (fulfilling or later, label bought)",
            len(ids),
            sum(labelled(found.get(i)) for i in ids),
        )
        report.add(
            s,
            "time from Temporal back to every order labelled",
            "< 300 s",
            f"{recovered:.0f} s" if everything else f"not all after {recovered:.0f} s",
            bool(everything) and recovered < 300,
        )
        report.add(
            s,
            "TikTok orders shipped (sandbox clock +2 h)",
            len(ids),
            sum((found.get(i) or {}).get("status") in {"shipped", "delivered"} for i in ids),
        )
        report.add(
            s,
            "storefront orders placed during the outage, paid since",
            len(storefront_ids),
            paid_later,
        )
        report.add(
            s,
            "time from Temporal back to an empty outbox (relay backoff)",
            "< 120 s",
            f"{drained_after:.0f} s (a row tried up to {retried} times)"
            if drained_after is not None
            else "not empty after 300 s",
            drained_after is not None and drained_after < 120,
        )
        report.add(s, "outbox rows never dispatched", 0, undelivered)
