"""A webhook storm, as providers deliver under stress: 1,000 Stripe and TikTok deliveries at
once, 30 % of them redeliveries, 10 % with a bad signature, 5 % with a stale timestamp, 5 %
over the size limit. Each event has exactly one effect (one inbox row, one outbox message);
every bad delivery is refused with problem+json and leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fulfil.settings import Settings
from fulfil.signatures import tiktok_webhook_signature
from tests.api.conftest import (
    PROBLEM_JSON,
    MerchantActor,
    make_merchant,
    order_body,
    rows,
    stripe_event,
    stripe_signature,
)

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
