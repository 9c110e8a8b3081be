"""Scenario ``postgres-down`` of ``bench/chaos.py``: PostgreSQL cut (then hung) at a proxy;
refusals are clean 503s, nothing half-written, the accepted orders get paid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass

import httpx

from bench.chaos_common import (
    LOGS,
    PAID,
    Answer,
    Cuttable,
    Database,
    Report,
    exchange,
    fresh_logs,
    listed,
    say,
    tally,
    until,
    worker_alive,
    worker_started,
)
from bench.chaos_engine import accepted_order, new_shop, place_order
from bench.stack import Stack, running_stack, wait_ready
from fulfil.signatures import tiktok_webhook_signature


@dataclass
class Attempt:
    key: str
    began: float
    ended: float
    answer: Answer


def tiktok_event(shop_id: str) -> bytes:
    return json.dumps(
        {
            "type": 1,
            "tts_notification_id": f"chaos{uuid.uuid4().hex}",
            "shop_id": shop_id,
            "timestamp": int(time.time()),
            "data": {
                "order_id": f"57{random.randrange(10**16, 10**17)}",
                "order_status": "AWAITING_SHIPMENT",
                "update_time": int(time.time()),
            },
        }
    ).encode()


async def post_tiktok_webhook(stack: Stack, http: httpx.AsyncClient, body: bytes) -> Answer:
    signature = tiktok_webhook_signature(
        stack.settings.tiktok_app_key, stack.settings.tiktok_app_secret, body
    )
    return await exchange(
        http.post(
            f"{stack.api}/webhooks/tiktok",
            content=body,
            headers={"Authorization": signature, "Content-Type": "application/json"},
            timeout=20,
        )
    )


async def postgres_down(args: argparse.Namespace, report: Report) -> None:
    s = "postgres-down"
    down = args.postgres_down_seconds or (12 if args.quick else 30)
    route = Cuttable("postgresql")
    fresh_logs(LOGS / "chaos-postgres")
    try:
        async with (
            running_stack(LOGS / "chaos-postgres", through=route, worker_metrics_port=0) as stack,
            httpx.AsyncClient(timeout=30) as http,
        ):
            proxy = route.cut
            db = Database(route.direct)
            stack.start_worker()
            await wait_ready(stack, http)
            if not await worker_started(stack):
                raise RuntimeError("the worker did not start")
            shop = await new_shop(stack, http)
            known = await accepted_order(stack, http, shop)
            attempts: list[Attempt] = []
            stop = asyncio.Event()

            async def place_forever() -> None:
                while not stop.is_set():
                    key = uuid.uuid4().hex
                    began = time.monotonic()
                    answer = await exchange(place_order(stack, http, shop, key, timeout=20))
                    attempts.append(Attempt(key, began, time.monotonic(), answer))
                    await asyncio.sleep(0.1)

            placers = [asyncio.create_task(place_forever()) for _ in range(3)]
            await asyncio.sleep(3)
            proxy.cut("refuse")
            cut_at = time.monotonic()
            say(f"PostgreSQL cut (refused) for {down} s")
            probes: dict[str, list[Answer]] = {}
            webhooks: list[tuple[bytes, Answer]] = []

            async def probe_all() -> None:
                order_url = f"{stack.api}/api/v1/orders/{known}"
                for what, url, headers in (
                    ("GET /api/v1/orders/{id} (merchant)", order_url, shop.headers),
                    ("GET /api/v1/orders/{id} (ops)", order_url, stack.ops),
                    ("GET /readyz", f"{stack.api}/readyz", {}),
                    ("GET /livez", f"{stack.api}/livez", {}),
                ):
                    answer = await exchange(http.get(url, headers=headers))
                    probes.setdefault(what, []).append(answer)
                # A signed TikTok event for a shop nobody has: recorded and ignored when it can
                # be recorded; while PostgreSQL is down it must not be acknowledged.
                body = tiktok_event("99" + "".join(random.choices("0123456789", k=17)))
                answer = await post_tiktok_webhook(stack, http, body)
                probes.setdefault("POST /webhooks/tiktok (signed)", []).append(answer)
                webhooks.append((body, answer))

            await asyncio.sleep(1)
            await probe_all()  # the merchant key still cached by the API (5 s)
            await asyncio.sleep(6)
            await probe_all()  # and no longer
            await asyncio.sleep(max(0.0, down - (time.monotonic() - cut_at)))
            alive_through = worker_alive(stack)
            proxy.restore()
            restored_at = time.monotonic()

            async def ready() -> bool:
                return (await exchange(http.get(f"{stack.api}/readyz"))).status == 200

            await until(ready, timeout=120, interval=0.5)
            ready_after = time.monotonic() - restored_at
            await asyncio.sleep(3)
            stop.set()
            await asyncio.gather(*placers)

            # A server that hangs rather than refuses: connections accepted, never answered.
            proxy.cut("blackhole")
            say("PostgreSQL blackholed")
            await asyncio.sleep(6)  # past the API's key cache
            hung_read = await exchange(
                http.get(f"{stack.api}/api/v1/orders/{known}", headers=shop.headers, timeout=30)
            )
            hung_key = uuid.uuid4().hex
            hung_post = await exchange(place_order(stack, http, shop, hung_key, timeout=30))
            hung_ready = await exchange(http.get(f"{stack.api}/readyz", timeout=20))
            proxy.restore()
            await until(ready, timeout=120, interval=0.5)
            alive_after = worker_alive(stack)
            if not alive_after:
                stack.start_worker()

            # Every webhook refused while down is taken once redelivered.
            redelivered = [await post_tiktok_webhook(stack, http, b) for b, _ in webhooks]
            ids = [json.loads(b)["tts_notification_id"] for b, _ in webhooks]
            recorded = (
                await db.rows(
                    "SELECT count(*) FROM inbox_events WHERE provider = 'tiktok' "
                    "AND event_id = ANY(%s)",
                    ids,
                )
            )[0][0]

            during = [a for a in attempts if a.began >= cut_at and a.ended < restored_at]
            accepted = {a.answer.body["order_id"]: a for a in attempts if a.answer.status == 202}
            refused = [a for a in attempts if a.answer.status not in (202, None)]
            unknown = [a for a in attempts if a.answer.status is None]
            whole = await db.rows(
                "SELECT o.id, "
                "(SELECT count(*) FROM order_items i WHERE i.order_id = o.id), "
                "(SELECT count(*) FROM order_events e WHERE e.order_id = o.id "
                "  AND e.type = 'order.created'), "
                "(SELECT count(*) FROM outbox x WHERE x.workflow_id = 'order-' || o.id "
                "  AND x.kind = 'start_workflow') "
                "FROM orders o WHERE o.merchant_id = %s",
                shop.id,
            )
            complete = {
                i for i, items, events, rows in whole if items > 0 and events == 1 and rows == 1
            }
            in_db = {i for i, *_ in whole}
            keys_of = dict(
                await db.rows(
                    "SELECT key, resource_id FROM idempotency_records WHERE merchant_id = %s",
                    shop.id,
                )
            )
            refused_but_there = [a.key for a in refused if a.key in keys_of]
            unknown_there = [a.key for a in unknown if a.key in keys_of]
            expected_ids = set(accepted) | {keys_of[k] for k in unknown_there} | {known}
            if hung_key in keys_of:  # committed although its client heard nothing
                expected_ids.add(keys_of[hung_key])
            stray = sorted(in_db - expected_ids)

            async def all_paid() -> bool:
                rows = await db.rows(
                    "SELECT count(*) FROM orders WHERE id = ANY(%s) AND status = ANY(%s)",
                    list(accepted),
                    list(PAID),
                )
                return bool(rows[0][0] == len(accepted))

            await until(all_paid, timeout=300, interval=3)
            paid = (
                await db.rows(
                    "SELECT count(*) FROM orders WHERE id = ANY(%s) AND status = ANY(%s)",
                    list(accepted),
                    list(PAID),
                )
            )[0][0]

            report.add(
                s,
                "PostgreSQL cut at a proxy in front of it (connections refused)",
                f"{down} s",
                f"{restored_at - cut_at:.0f} s",
            )
            report.add(
                s,
                "POST /api/v1/orders answered while it was down",
                "503 problem+json",
                tally([a.answer for a in during]),
                bool(during) and all(a.answer.is_problem(503) for a in during),
            )
            slowest = max((a.answer.seconds for a in during), default=0.0)
            report.add(s, "slowest of those answers", "< 5 s", f"{slowest:.2f} s", slowest < 5)
            for what, answers in probes.items():
                want = {"GET /livez": 200}.get(what, 503)
                report.add(
                    s,
                    f"{what} while down (key cached, then not)",
                    f"{want}" + (" problem+json" if want != 200 else ""),
                    "; ".join(str(a) for a in answers),
                    all(a.status == want and (want == 200 or a.is_problem(want)) for a in answers),
                )
            report.add(
                s,
                "worker process alive through the outage",
                "yes",
                "yes" if alive_through else "no (it exited)",
            )
            report.add(
                s,
                "/readyz 200 again after the proxy was restored",
                "< 10 s",
                f"{ready_after:.1f} s",
                ready_after < 10,
            )
            report.add(
                s, "refused (non-202) orders that exist anyway", 0, listed(refused_but_there)
            )
            report.add(
                s,
                "accepted (202) orders complete: items, order.created event, outbox row",
                len(accepted),
                len(set(accepted) & complete),
            )
            report.add(
                s, "orders in the database nobody was told about (not 202)", 0, listed(stray)
            )
            report.add(
                s,
                "requests with no answer (outcome unknown to the client)",
                0,
                f"{len(unknown)} ({len(unknown_there)} of them committed)" if unknown else "0",
                not unknown,
            )
            report.add(s, "accepted orders paid once PostgreSQL was back", len(accepted), paid)
            report.add(
                s,
                "webhooks refused while down, recorded when redelivered",
                f"{len(webhooks)} (answered 200)",
                f"{recorded} ({tally(redelivered)})",
                recorded == len(webhooks) and all(a.status == 200 for a in redelivered),
            )
            report.add(
                s,
                "hung PostgreSQL: GET /api/v1/orders/{id}",
                "503 problem+json < 10 s",
                str(hung_read),
                hung_read.is_problem(503) and hung_read.seconds < 10,
            )
            report.add(
                s,
                "hung PostgreSQL: POST /api/v1/orders",
                "503 problem+json < 10 s",
                f"{hung_post}; order {'written' if hung_key in keys_of else 'not written'}",
                hung_post.is_problem(503) and hung_post.seconds < 10,
            )
            report.add(
                s,
                "hung PostgreSQL: GET /readyz",
                "503 problem+json < 10 s",
                str(hung_ready),
                hung_ready.is_problem(503) and hung_ready.seconds < 10,
            )
            report.add(
                s,
                "worker process alive after both outages",
                "yes",
                "yes" if alive_after else "no (it exited)",
            )
            for a in [a for a in during if not a.answer.is_problem(503)][:1]:
                say(f"example answer while down: {a.answer} {a.answer.body}")
    finally:
        route.close()
