"""Scenario ``redis-down`` of ``bench/chaos.py``: Redis cut (then hung) at a proxy; rate limits
off, orders still placed, deployments in flight finish, one whose token was lost asks again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import time
import uuid
from collections import Counter

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from activities.vault import NONCE_BYTES
from activities.vault import PREFIX as VAULT_PREFIX
from bench.chaos_common import (
    DEPLOY_ENDED,
    LOGS,
    PAID,
    Cuttable,
    Database,
    Report,
    exchange,
    fresh_logs,
    say,
    tally,
    until,
    worker_alive,
    worker_started,
)
from bench.chaos_engine import (
    add_faults,
    deploy,
    deploy_body,
    deployment,
    deployment_faults,
    ledger_of,
    made_for,
    new_merchant,
    new_shop,
    place_order,
)
from bench.stack import running_stack, wait_ready
from workflows.package_deployment import WAITING_FOR_TOKEN


async def drop_vault_token(redis: Redis, vault_key: str, deployment_id: str) -> int:
    """Delete this deployment's token from the vault (as a Redis restarted empty would): the
    sealed value that opens with the deployment id as associated data. Touches no other key."""
    aes = AESGCM(base64.b64decode(vault_key))
    dropped = 0
    async for key in redis.scan_iter(match=f"{VAULT_PREFIX}*", count=500):
        sealed = await redis.get(key)
        if not isinstance(sealed, bytes):
            continue
        with contextlib.suppress(InvalidTag, ValueError):
            aes.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], deployment_id.encode())
            dropped += await redis.delete(key)
    return dropped


async def redis_down(args: argparse.Namespace, report: Report) -> None:
    s = "redis-down"
    down = args.redis_down_seconds or (12 if args.quick else 30)
    limit = 120  # requests a minute per key, for this scenario
    route = Cuttable("redis")
    fresh_logs(LOGS / "chaos-redis")
    try:
        async with (
            running_stack(
                LOGS / "chaos-redis",
                through=route,
                rate_limit_per_minute=limit,
                deploy_step_heartbeat_seconds=3,
                sticky_schedule_to_start_seconds=1.0,
                worker_metrics_port=0,
            ) as stack,
            httpx.AsyncClient(timeout=30) as http,
        ):
            proxy = route.cut
            db = Database(stack.settings.database_url)
            direct = Redis.from_url(route.direct)
            stack.start_worker()
            await wait_ready(stack, http)
            if not await worker_started(stack):
                raise RuntimeError("the worker did not start")
            shop = await new_shop(stack, http)
            buyer = await new_merchant(stack, http)
            prober = await new_merchant(stack, http)

            async def burst(n: int) -> Counter[int | None]:
                """``n`` requests with one merchant key inside one rate-limit window."""
                if time.time() % 60 > 45:
                    await asyncio.sleep(61 - time.time() % 60)
                limiter = asyncio.Semaphore(10)

                async def one() -> int | None:
                    async with limiter:
                        answer = await exchange(
                            http.get(f"{stack.api}/api/v1/merchants/me", headers=prober.headers)
                        )
                        return answer.status

                return Counter(await asyncio.gather(*(one() for _ in range(n))))

            limited_up = await burst(limit + 10)
            await add_faults(
                stack,
                http,
                [
                    {"provider": "cloudflare", "method": "POST", "latency_ms": 1500},
                    {"provider": "cloudflare", "method": "PUT", "latency_ms": 1500},
                ],
            )
            in_flight_body, lost_body = deploy_body(), deploy_body()
            in_flight_id = await deploy(stack, http, buyer, in_flight_body)
            lost_id = await deploy(stack, http, buyer, lost_body)

            async def past_first_step() -> bool:
                found = [await deployment(stack, http, i) for i in (in_flight_id, lost_id)]
                return all(f["steps"][0]["status"] == "succeeded" for f in found)

            await until(past_first_step, timeout=60, interval=0.3)
            deployments_before = (
                await db.rows("SELECT count(*) FROM deployments WHERE merchant_id = %s", buyer.id)
            )[0][0]

            proxy.cut("refuse")
            cut_at = time.monotonic()
            say(f"Redis cut (refused) for {down} s")
            dropped = await drop_vault_token(direct, stack.settings.vault_key, lost_id)
            await asyncio.sleep(1)
            limited_down = await burst(limit + 10)
            orders_down = []
            for _ in range(5):
                orders_down.append(await exchange(place_order(stack, http, shop, uuid.uuid4().hex)))
            ready_down = await exchange(http.get(f"{stack.api}/readyz"))
            deploy_down = await exchange(
                http.post(
                    f"{stack.api}/api/deploy",
                    json=deploy_body(),
                    headers={**buyer.headers, "Idempotency-Key": uuid.uuid4().hex},
                )
            )
            mid = await deployment(stack, http, in_flight_id)
            running = [st for st in mid["steps"] if st["status"] == "running"]
            mid_seen = f"{mid['status']}" + (f", {running[0]['name']} running" if running else "")
            await asyncio.sleep(max(0.0, down - (time.monotonic() - cut_at)))
            deployments_after = (
                await db.rows("SELECT count(*) FROM deployments WHERE merchant_id = %s", buyer.id)
            )[0][0]
            alive_through = worker_alive(stack)
            proxy.restore()
            restored_at = time.monotonic()
            say("Redis restored")

            async def asks_for_token() -> bool:
                found = await deployment(stack, http, lost_id)
                return found["status"] in DEPLOY_ENDED or any(
                    WAITING_FOR_TOKEN.split(":")[0] in (st.get("detail") or "")
                    for st in found["steps"]
                )

            asked = await until(asks_for_token, timeout=180, interval=1)
            lost_state = await deployment(stack, http, lost_id)
            supplied = await exchange(
                http.post(
                    f"{stack.api}/api/deploy/{lost_id}/token",
                    json={"api_token": f"cf-{uuid.uuid4().hex}"},
                    headers=buyer.headers,
                )
            )

            async def both_ended() -> bool:
                found = [await deployment(stack, http, i) for i in (in_flight_id, lost_id)]
                return all(f["status"] in DEPLOY_ENDED for f in found)

            await until(both_ended, timeout=300, interval=1)
            await http.delete(f"{stack.sandbox}/_sandbox/faults")
            ledger = await ledger_of(stack, http)
            in_flight_wrong = deployment_faults(
                await deployment(stack, http, in_flight_id), made_for(ledger, in_flight_body)
            )
            lost_wrong = deployment_faults(
                await deployment(stack, http, lost_id), made_for(ledger, lost_body)
            )
            placed = [a.body["order_id"] for a in orders_down if a.status == 202]

            async def all_paid() -> bool:
                rows = await db.rows(
                    "SELECT count(*) FROM orders WHERE id = ANY(%s) AND status = ANY(%s)",
                    placed,
                    list(PAID),
                )
                return bool(rows[0][0] == len(placed))

            await until(all_paid, timeout=180, interval=2)
            paid = 0
            for order_id in placed:
                r = await http.get(f"{stack.api}/api/v1/orders/{order_id}", headers=stack.ops)
                paid += r.json()["status"] in PAID

            # A Redis that hangs: the limiter waits for its timeouts on every request.
            proxy.cut("blackhole")
            await asyncio.sleep(1)
            hung_orders, hung_reads = [], []
            for _ in range(4):
                hung_orders.append(
                    await exchange(place_order(stack, http, shop, uuid.uuid4().hex, timeout=30))
                )
                hung_reads.append(
                    await exchange(
                        http.get(
                            f"{stack.api}/api/v1/merchants/me", headers=shop.headers, timeout=30
                        )
                    )
                )
            proxy.restore()
            await direct.aclose()

            report.add(
                s,
                "Redis cut at a proxy in front of it (connections refused)",
                f"{down} s",
                f"{restored_at - cut_at:.0f} s",
            )
            report.add(
                s,
                f"rate limit with Redis up: {limit + 10} requests, one key, {limit}/min",
                "some 429",
                _codes(limited_up),
                limited_up[429] > 0,
            )
            report.add(
                s,
                f"rate limit with Redis down: {limit + 10} requests, one key",
                f"200 x{limit + 10} (limits off)",
                _codes(limited_down),
                limited_down[200] == limit + 10,
            )
            report.add(
                s,
                "POST /api/v1/orders while Redis was down",
                "202 x5",
                tally(orders_down),
                all(a.status == 202 for a in orders_down),
            )
            slowest = max((a.seconds for a in orders_down), default=0.0)
            report.add(s, "slowest of those", "< 1 s", f"{slowest:.2f} s", slowest < 1)
            report.add(s, "those orders paid afterwards", len(placed), paid)
            report.add(
                s,
                "GET /readyz while Redis was down (CONTRACT: checks Redis)",
                "503 problem+json",
                str(ready_down),
                ready_down.is_problem(503),
            )
            report.add(
                s,
                "POST /api/deploy while Redis was down (the token has nowhere to go)",
                "503 problem+json",
                str(deploy_down),
                deploy_down.is_problem(503),
            )
            report.add(
                s,
                "deployments written by that refused request",
                0,
                deployments_after - deployments_before,
            )
            report.add(
                s,
                "worker process alive through the outage",
                "yes",
                "yes" if alive_through else "no (it exited)",
            )
            report.add(
                s,
                "deployment in flight when Redis went: state during the outage",
                "running",
                mid_seen,
                mid["status"] == "running",
            )
            report.add(
                s,
                "deployment in flight: succeeded after, each resource once",
                "succeeded",
                "; ".join(in_flight_wrong) or "succeeded",
                not in_flight_wrong,
            )
            report.add(
                s,
                "deployment whose token Redis lost: asks for a new one",
                "waiting for a new token",
                "token dropped from the vault: "
                f"{dropped}; " + ("asked" if asked else f"not asked ({lost_state['status']})"),
                bool(asked) and dropped == 1,
            )
            report.add(
                s,
                "…given a new token (POST /api/deploy/{id}/token): succeeded, once each",
                "202, succeeded",
                f"{supplied.status}, " + ("; ".join(lost_wrong) or "succeeded"),
                supplied.status == 202 and not lost_wrong,
            )
            for what, answers, want in (
                ("POST /api/v1/orders", hung_orders, 202),
                ("GET /api/v1/merchants/me", hung_reads, 200),
            ):
                slowest = max(a.seconds for a in answers)
                report.add(
                    s,
                    f"hung Redis: {what}, 4 in a row",
                    f"{want} x4, each < 1 s",
                    f"{tally(answers)}, slowest {slowest:.2f} s",
                    all(a.status == want for a in answers) and slowest < 1,
                )
    finally:
        route.close()


def _codes(counted: Counter[int | None]) -> str:
    return ", ".join(f"{code or 'no answer'} x{n}" for code, n in sorted(counted.items(), key=str))
