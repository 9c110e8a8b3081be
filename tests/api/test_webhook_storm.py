"""A webhook storm, as providers deliver under stress: 1,000 Stripe and TikTok deliveries at
once, 30 % of them redeliveries, 10 % with a bad signature, 5 % with a stale timestamp, 5 %
over the size limit. Each event has exactly one effect (one inbox row, one outbox message);
every bad delivery is refused with problem+json and leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from db.models import InboxEvent
from devstack.harness import in_process
from fulfil.settings import Settings
from fulfil.signatures import tiktok_webhook_signature
from tests.api.conftest import (
    PROBLEM_JSON,
    MerchantActor,
    make_merchant,
    order_body,
    rows,
    scalar,
    stripe_event,
    stripe_signature,
)
from tests.integration.support import eventually

TOTAL = 1000
DUPLICATES = 300  # 30 %
BAD_SIGNATURES = 100  # 10 %
STALE = 50  # 5 %
OVERSIZED = 50  # 5 %
UNIQUE = TOTAL - DUPLICATES - BAD_SIGNATURES - STALE - OVERSIZED  # 500 events with an effect
IN_FLIGHT = 50


@dataclass(frozen=True)
class Delivery:
    provider: str
    event_id: str
    body: bytes
    headers: dict[str, str]
    expected: int  # the status this delivery must get


def tiktok_delivery(settings: Settings, shop_id: str, *, sign: bool = True) -> Delivery:
    notification_id = f"storm-{uuid.uuid4().hex}"
    body = json.dumps(
        {
            "type": 1,
            "tts_notification_id": notification_id,
            "shop_id": shop_id,
            "timestamp": int(time.time()),
            "data": {
                "order_id": f"57{random.randrange(10**15):015d}",
                "order_status": "AWAITING_SHIPMENT",
                "update_time": int(time.time()),
            },
        }
    ).encode()
    secret = settings.tiktok_app_secret if sign else "not-the-app-secret"
    signature = tiktok_webhook_signature(settings.tiktok_app_key, secret, body)
    return Delivery(
        "tiktok",
        notification_id,
        body,
        {"Authorization": signature, "Content-Type": "application/json"},
        200 if sign else 401,
    )


def stripe_delivery(
    settings: Settings, order_id: str, *, secret: str | None = None, age: int = 0
) -> Delivery:
    event_id = f"evt_storm_{uuid.uuid4().hex}"
    body = stripe_event(
        "payment_intent.succeeded",
        {
            "id": f"pi_{uuid.uuid4().hex[:24]}",
            "object": "payment_intent",
            "metadata": {"order_id": order_id},
        },
        event_id,
    )
    signature = stripe_signature(
        body, secret or settings.stripe_webhook_secret, at=int(time.time()) - age
    )
    good = secret is None and age == 0
    return Delivery(
        "stripe",
        event_id,
        body,
        {"Stripe-Signature": signature, "Content-Type": "application/json"},
        200 if good else 401,
    )


def oversized(settings: Settings, delivery: Delivery) -> Delivery:
    """The same kind of event, correctly signed, padded past MAX_WEBHOOK_BODY_BYTES."""
    event = json.loads(delivery.body)
    event["padding"] = "x" * settings.max_webhook_body_bytes
    body = json.dumps(event).encode()
    if delivery.provider == "tiktok":
        signature = tiktok_webhook_signature(
            settings.tiktok_app_key, settings.tiktok_app_secret, body
        )
        headers = {"Authorization": signature, "Content-Type": "application/json"}
    else:
        headers = {
            "Stripe-Signature": stripe_signature(body, settings.stripe_webhook_secret),
            "Content-Type": "application/json",
        }
    return Delivery(delivery.provider, delivery.event_id, body, headers, 413)


async def test_a_storm_of_webhooks_has_one_effect_per_event_and_none_for_bad_ones(
    client: httpx.AsyncClient,
    ops: dict[str, str],
    api_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop_id = f"74{random.randrange(10**15):015d}"
    merchant: MerchantActor = await make_merchant(client, ops, tiktok_shop_id=shop_id)
    await merchant.add_product("STORM-1", stock=100)
    order_ids = []
    for _ in range(10):
        placed = await merchant.place(order_body(("STORM-1", 1)))
        assert placed.status_code == 202, placed.text
        order_ids.append(placed.json()["order_id"])

    rng = random.Random(20261130)
    valid = [
        stripe_delivery(api_settings, rng.choice(order_ids))
        if i % 2
        else tiktok_delivery(api_settings, shop_id)
        for i in range(UNIQUE)
    ]
    bad = [
        stripe_delivery(api_settings, rng.choice(order_ids), secret="whsec_not_ours")
        if i % 2
        else tiktok_delivery(api_settings, shop_id, sign=False)
        for i in range(BAD_SIGNATURES)
    ]
    stale = [
        stripe_delivery(api_settings, rng.choice(order_ids), age=301 + i) for i in range(STALE)
    ]
    big = [
        oversized(
            api_settings,
            stripe_delivery(api_settings, rng.choice(order_ids))
            if i % 2
            else tiktok_delivery(api_settings, shop_id),
        )
        for i in range(OVERSIZED)
    ]
    redelivered = [rng.choice(valid) for _ in range(DUPLICATES)]
    storm = [*valid, *bad, *stale, *big, *redelivered]
    assert len(storm) == TOTAL
    rng.shuffle(storm)

    gate = asyncio.Semaphore(IN_FLIGHT)

    async def deliver(delivery: Delivery) -> httpx.Response:
        async with gate:
            return await client.post(
                f"/webhooks/{delivery.provider}", content=delivery.body, headers=delivery.headers
            )

    answers = await asyncio.gather(*(deliver(d) for d in storm))

    wrong = [
        (d.provider, d.expected, r.status_code, r.text[:200])
        for d, r in zip(storm, answers, strict=True)
        if r.status_code != d.expected
    ]
    assert wrong == [], wrong[:5]
    refused = [r for d, r in zip(storm, answers, strict=True) if d.expected != 200]
    assert all(r.headers["content-type"].startswith(PROBLEM_JSON) for r in refused)
    # Of every event's deliveries, exactly one was taken as new; the rest were duplicates.
    firsts = Counter(
        d.event_id
        for d, r in zip(storm, answers, strict=True)
        if d.expected == 200 and r.json()["duplicate"] is False
    )
    assert firsts == Counter({d.event_id: 1 for d in valid})

    # One inbox row per event, none for a refused delivery.
    recorded = await rows(
        sessionmaker,
        "SELECT provider, event_id FROM inbox_events WHERE event_id LIKE '%storm%'",
    )
    assert Counter((r["provider"], r["event_id"]) for r in recorded) == Counter(
        {(d.provider, d.event_id): 1 for d in valid}
    )

    # One outbox message per event: a payment signal per Stripe event, a signal-with-start
    # per TikTok notification, and nothing else for these orders and this shop.
    messages = await rows(
        sessionmaker,
        "SELECT workflow_id, payload FROM outbox "
        "WHERE workflow_id = ANY(:orders) AND kind = 'signal_workflow' "
        "OR workflow_id LIKE :shop",
        orders=[f"order-{o}" for o in order_ids],
        shop=f"tiktok-{shop_id}-%",
    )
    payments = Counter(
        m["payload"]["arg"]["payment_intent_id"]
        for m in messages
        if m["workflow_id"].startswith("order-")
    )
    expected_payments = Counter(
        {json.loads(d.body)["data"]["object"]["id"]: 1 for d in valid if d.provider == "stripe"}
    )
    assert payments == expected_payments
    notifications = Counter(
        json.loads(d.body)["data"]["order_id"] for d in valid if d.provider == "tiktok"
    )
    started = Counter(
        m["workflow_id"].removeprefix(f"tiktok-{shop_id}-")
        for m in messages
        if m["workflow_id"].startswith("tiktok-")
    )
    assert started == notifications


# --- a provider's burst and everyone else ---------------------------------------

BURST = 40  # more than the API's 30 database connections
SLOTS = 3


async def waiting_in_postgres(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Webhook transactions blocked on an inbox row another transaction holds."""
    return int(
        await scalar(
            sessionmaker,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO inbox_events%'",
        )
    )


async def waiting_for_a_slot(client: httpx.AsyncClient, provider: str) -> float:
    metrics = (await client.get("/metrics")).text
    for line in metrics.splitlines():
        if line.startswith(f'webhook_requests_waiting{{provider="{provider}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@contextlib.asynccontextmanager
async def holding(
    sessionmaker: async_sessionmaker[AsyncSession], deliveries: list[Delivery]
) -> AsyncIterator[AsyncSession]:
    """An open transaction holding these events' inbox keys: recording any of them waits for
    it. Rolled back at the end, so the waiting deliveries then record them."""
    async with sessionmaker() as holder:
        await holder.execute(
            insert(InboxEvent),
            [
                {
                    "provider": d.provider,
                    "event_id": d.event_id,
                    "event_type": "held",
                    "payload": {},
                }
                for d in deliveries
            ],
        )
        try:
            yield holder
        finally:
            await holder.rollback()


def post(client: httpx.AsyncClient, delivery: Delivery) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(
        client.post(
            f"/webhooks/{delivery.provider}", content=delivery.body, headers=delivery.headers
        )
    )


async def test_a_providers_burst_waits_its_turn_and_leaves_the_pool_to_merchants(
    ops: dict[str, str],
    api_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """40 TikTok notifications stuck in the database at once: 3 hold a connection, 37 wait
    for a slot, and meanwhile merchants read and write and Stripe's events are recorded.
    Unbounded, the 40 took all 30 connections and the merchant waited 10 s for a 503."""
    settings = api_settings.model_copy(update={"webhook_concurrency": SLOTS})
    async with in_process(create_app(settings)) as client:
        merchant = await make_merchant(client, ops)
        shop_id = f"74{random.randrange(10**15):015d}"
        burst = [tiktok_delivery(settings, shop_id) for _ in range(BURST)]
        async with holding(sessionmaker, burst):
            sent = [post(client, d) for d in burst]

            async def all_queued() -> tuple[int, float] | None:
                seen = (
                    await waiting_in_postgres(sessionmaker),
                    await waiting_for_a_slot(client, "tiktok"),
                )
                return seen if seen == (SLOTS, BURST - SLOTS) else None

            await eventually(all_queued, timeout=30)

            product = await merchant.add_product("BULKHEAD-1", stock=5)
            assert product["stock"] == 5
            listed = await client.get("/api/v1/orders", headers=merchant.auth)
            assert listed.status_code == 200, listed.text
            stripe = stripe_delivery(settings, "ord_unknown")
            answer = await post(client, stripe)
            assert answer.status_code == 200, answer.text
            assert answer.json()["ignored"] == "unknown order"
            # Still no more than the slots in the database, the rest still waiting.
            assert await waiting_in_postgres(sessionmaker) == SLOTS
            assert not any(task.done() for task in sent)

        answers = await asyncio.gather(*sent)
        assert [r.status_code for r in answers] == [200] * BURST, answers[0].text
        assert all(r.json()["duplicate"] is False for r in answers)
        assert await waiting_for_a_slot(client, "tiktok") == 0
    recorded = await rows(
        sessionmaker,
        "SELECT event_id, event_type FROM inbox_events WHERE event_id = ANY(:ids)",
        ids=[d.event_id for d in burst],
    )
    assert Counter(r["event_id"] for r in recorded) == Counter({d.event_id: 1 for d in burst})
    assert {r["event_type"] for r in recorded} == {"type_1"}


async def test_a_burst_past_the_deadline_is_answered_503_and_frees_its_slots(
    api_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Held past the request deadline, the burst is answered 503 with Retry-After (the
    provider retries) and records nothing; its slots are free again afterwards."""
    settings = api_settings.model_copy(
        update={"webhook_concurrency": SLOTS, "api_request_deadline_seconds": 2.0}
    )
    async with in_process(create_app(settings)) as client:
        shop_id = f"74{random.randrange(10**15):015d}"
        burst = [tiktok_delivery(settings, shop_id) for _ in range(SLOTS * 3)]
        async with holding(sessionmaker, burst):
            answers = await asyncio.gather(*(post(client, d) for d in burst))
            assert {r.status_code for r in answers} == {503}, answers[0].text
            assert all(r.headers["content-type"].startswith(PROBLEM_JSON) for r in answers)
            assert all(r.headers["retry-after"] == "5" for r in answers)
            await eventually(lambda: _zero(waiting_in_postgres(sessionmaker)), timeout=30)
            assert await waiting_for_a_slot(client, "tiktok") == 0

        # The provider's retries: every slot is back, each event recorded once.
        retried = await asyncio.gather(*(post(client, d) for d in burst))
        assert [r.status_code for r in retried] == [200] * len(burst), retried[0].text
        assert all(r.json()["duplicate"] is False for r in retried)
    count = await scalar(
        sessionmaker,
        "SELECT count(*) FROM inbox_events WHERE event_id = ANY(:ids)",
        ids=[d.event_id for d in burst],
    )
    assert count == len(burst)


async def _zero(count: Awaitable[int]) -> bool:
    return await count == 0
