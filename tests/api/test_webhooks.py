"""Stripe webhook: verified, recorded once, payment relayed to the order's workflow."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from fulfil.settings import Settings
from tests.api.conftest import (
    MerchantActor,
    assert_problem,
    order_body,
    rows,
    scalar,
    stripe_event,
    stripe_signature,
)


@pytest.fixture
async def order_id(merchant: MerchantActor) -> str:
    await merchant.add_product("BOOK-1", stock=3)
    r = await merchant.place(order_body(("BOOK-1", 1)))
    assert r.status_code == 202
    return str(r.json()["order_id"])


async def inbox_count(sessionmaker, event_id: str) -> int:
    return int(
        await scalar(
            sessionmaker,
            "SELECT count(*) FROM inbox_events WHERE provider = 'stripe' AND event_id = :e",
            e=event_id,
        )
    )


async def post(client: httpx.AsyncClient, payload: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await client.post("/webhooks/stripe", content=payload, headers=headers)


@pytest.mark.parametrize("case", ["missing", "wrong-secret", "tampered", "too-old", "garbage"])
async def test_bad_signature_is_401_and_records_nothing(
    client: httpx.AsyncClient, api_settings: Settings, sessionmaker, case: str
) -> None:
    event_id = f"evt_{uuid.uuid4().hex[:20]}"
    payload = stripe_event("payment_intent.succeeded", {"id": "pi_1"}, event_id)
    secret = api_settings.stripe_webhook_secret
    signature = {
        "missing": None,
        "wrong-secret": stripe_signature(payload, "whsec_other"),
        "tampered": stripe_signature(payload.replace(b"pi_1", b"pi_2"), secret),
        "too-old": stripe_signature(payload, secret, at=int(time.time()) - 301),
        "garbage": "not a signature",
    }[case]
    r = await post(client, payload, signature)
    assert_problem(r, 401)
    assert await inbox_count(sessionmaker, event_id) == 0


async def test_payment_succeeded_is_recorded_once_and_signals_the_workflow(
    client: httpx.AsyncClient, api_settings: Settings, sessionmaker, order_id: str
) -> None:
    event_id = f"evt_{uuid.uuid4().hex[:20]}"
    payload = stripe_event(
        "payment_intent.succeeded",
        {
            "id": "pi_123",
            "object": "payment_intent",
            "latest_charge": "ch_456",
            "metadata": {"order_id": order_id},
        },
        event_id,
    )
    for attempt in range(2):
        r = await post(
            client, payload, stripe_signature(payload, api_settings.stripe_webhook_secret)
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"received": True, "duplicate": attempt == 1}

    assert await inbox_count(sessionmaker, event_id) == 1
    signals = await rows(
        sessionmaker,
        "SELECT * FROM outbox WHERE workflow_id = :w AND kind = 'signal_workflow'",
        w=f"order-{order_id}",
    )
    assert len(signals) == 1
    assert signals[0]["payload"]["signal"] == "payment_succeeded"
    assert signals[0]["payload"]["arg"] == {"payment_intent_id": "pi_123", "charge_id": "ch_456"}
    assert signals[0]["payload"]["start"] is None


@pytest.mark.parametrize(
    ("event_type", "metadata"),
    [
        ("charge.refunded", None),
        ("payment_intent.payment_failed", "ORDER"),
        ("payment_intent.succeeded", {"order_id": "ord_does_not_exist"}),
        ("payment_intent.succeeded", {}),
    ],
)
async def test_other_events_are_recorded_only(
    client: httpx.AsyncClient,
    api_settings: Settings,
    sessionmaker,
    order_id: str,
    event_type: str,
    metadata: object,
) -> None:
    event_id = f"evt_{uuid.uuid4().hex[:20]}"
    obj = {"id": "pi_9", "metadata": {"order_id": order_id} if metadata == "ORDER" else metadata}
    payload = stripe_event(event_type, obj, event_id)
    r = await post(client, payload, stripe_signature(payload, api_settings.stripe_webhook_secret))
    assert r.status_code == 200, r.text
    assert await inbox_count(sessionmaker, event_id) == 1
    assert (
        await scalar(
            sessionmaker,
            "SELECT count(*) FROM outbox WHERE kind = 'signal_workflow' AND workflow_id = :w",
            w=f"order-{order_id}",
        )
        == 0
    )
