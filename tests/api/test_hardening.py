"""Findings of the outside review, each with the test that failed before its fix:
body limits before reading, keys before bodies, rate limits per key and per IP, security
headers, NUL characters, strict integers, odd but signed webhooks, and customer data
kept out of logs and the inbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from devstack.harness import in_process
from fulfil.settings import Settings
from tests.api.conftest import (
    MerchantActor,
    assert_problem,
    error_fields,
    make_merchant,
    order_body,
    scalar,
    stripe_event,
    stripe_signature,
)

MiB = 1024 * 1024


class CountingBody:
    """A streamed body that counts how many chunks the server pulled."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.pulled = 0
        self._chunks = chunks
        self._size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self._chunks):
            self.pulled += 1
            yield b"x" * self._size


# --- 3. body size, and authentication before the body -------------------------


async def test_oversized_webhook_is_413_before_reading(
    client: httpx.AsyncClient, sessionmaker
) -> None:
    """Finding: 100 MB to /webhooks/tiktok with a bad signature was read in full."""
    before = await scalar(sessionmaker, "SELECT count(*) FROM inbox_events")
    declared = await client.post(
        "/webhooks/tiktok",
        content=b"x" * (256 * 1024 + 1),
        headers={"Authorization": "0" * 64},
    )
    assert_problem(declared, 413)
    body = CountingBody(chunks=1600)  # 100 MiB, chunked (no Content-Length)
    chunked = await client.post(
        "/webhooks/tiktok", content=body, headers={"Authorization": "0" * 64}
    )
    assert_problem(chunked, 413)
    assert body.pulled <= 5  # refused once the limit was passed, not at the end
    assert await scalar(sessionmaker, "SELECT count(*) FROM inbox_events") == before


async def test_api_body_limit_is_one_mebibyte(merchant: MerchantActor) -> None:
    big = order_body(("MUG-1", 1), payment_method="pm_card_visa")
    big["customer"]["name"] = "A" * (MiB + 10)
    r = await merchant.place(big)
    assert_problem(r, 413)


async def test_a_bad_key_is_refused_before_the_body_is_read(client: httpx.AsyncClient) -> None:
    body = CountingBody(chunks=15)  # under the limit, so only the key can stop it
    r = await client.post(
        "/api/v1/orders",
        content=body,
        headers={"Authorization": "Bearer fk_nope", "Idempotency-Key": "k"},
    )
    assert_problem(r, 401)
    assert body.pulled <= 1


# --- 4. rate limits --------------------------------------------------------------


@pytest.fixture(scope="module")
async def limited(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose limits are tiny, with a Redis prefix of its own."""
    settings = api_settings.model_copy(
        update={"rate_limit_per_minute": 5, "anonymous_rate_limit": 4}
    )
    app: FastAPI = create_app(settings)
    async with in_process(app, client=(f"10.9.{uuid.uuid4().int % 250}.1", 1)) as client:
        app.state.resources.limiter._prefix = f"rl-test-{uuid.uuid4().hex[:8]}"
        yield client


async def test_each_key_has_its_own_limit(limited: httpx.AsyncClient, ops: dict[str, str]) -> None:
    """Finding: 150 requests with one key got 150 answers of 200."""
    noisy = await make_merchant(limited, ops)
    quiet = await make_merchant(limited, ops)
    answers = [(await limited.get("/api/v1/orders", headers=noisy.auth)) for _ in range(8)]
    assert [r.status_code for r in answers[:5]] == [200] * 5
    refused = answers[5]
    assert_problem(refused, 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # One key's limit never touches another's; ops is not limited.
    assert (await limited.get("/api/v1/orders", headers=quiet.auth)).status_code == 200
    for _ in range(8):
        assert (await limited.get("/api/v1/orders", headers=ops)).status_code == 200


async def test_unauthenticated_callers_are_limited_per_ip(limited: httpx.AsyncClient) -> None:
    statuses = [
        (await limited.get("/api/v1/orders", headers={"Authorization": "Bearer bad"})).status_code
        for _ in range(6)
    ]
    assert statuses[:4] == [401] * 4
    assert statuses[-1] == 429
    # Probes and webhooks are never limited.
    for _ in range(6):
        assert (await limited.get("/livez")).status_code == 200
        r = await limited.post("/webhooks/stripe", content=b"{}")
        assert r.status_code == 401


async def test_answers_carry_security_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/livez")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    problem = await client.get("/api/v1/orders")
    assert problem.headers["x-content-type-options"] == "nosniff"


# --- 6 and 8. strict input -------------------------------------------------------


async def test_nul_characters_are_refused_naming_the_field(
    merchant: MerchantActor, client: httpx.AsyncClient, sessionmaker
) -> None:
    """Finding: a NUL in a text field was a 500 that logged the customer's data."""
    await merchant.add_product("NUL-1")
    body = order_body(("NUL-1", 1))
    body["customer"]["name"] = "Ada\x00Lovelace"
    r = await merchant.place(body)
    problem = assert_problem(r, 422)
    assert "customer.name" in " ".join(error_fields(problem)) + problem["detail"]
    r = await client.get("/api/v1/orders/ord%00x", headers=merchant.auth)
    assert r.status_code in (404, 422)
    r = await client.post(
        "/api/v1/products",
        json={"sku": "N-2", "name": "x\x00", "price": 1, "currency": "USD", "stock": 1},
        headers=merchant.auth,
    )
    assert_problem(r, 422)


@pytest.mark.parametrize("value", [True, 1e3, "10", 10.0])
async def test_money_and_stock_are_strict_integers(merchant: MerchantActor, value: Any) -> None:
    r = await merchant.client.post(
        "/api/v1/products",
        json={
            "sku": f"S-{uuid.uuid4().hex[:6]}",
            "name": "x",
            "price": value,
            "currency": "USD",
            "stock": 1,
        },
        headers=merchant.auth,
    )
    assert error_fields(assert_problem(r, 422)) == ["price"]
    await merchant.add_product("STRICT-1")
    r = await merchant.client.patch(
        "/api/v1/products/STRICT-1", json={"stock": value}, headers=merchant.auth
    )
    assert error_fields(assert_problem(r, 422)) == ["stock"]


async def test_unknown_fields_are_refused(merchant: MerchantActor) -> None:
    r = await merchant.client.post(
        "/api/v1/discounts",
        json={"code": "X1", "percent_off": 5, "percnt": 1},
        headers=merchant.auth,
    )
    assert error_fields(assert_problem(r, 422)) == ["percnt"]


def test_database_errors_never_print_customer_data(api_settings: Settings) -> None:
    """Finding: a failing insert printed the customer's email, name and card into the log."""
    import asyncio
    import logging

    from db.session import make_engine
    from fulfil.logs import JsonFormatter

    async def failing_insert() -> DBAPIError:
        engine = make_engine(api_settings.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO orders (id) VALUES (:secret)"),
                    {"secret": "ada@example.com pm_card_visa"},
                )
        except DBAPIError as err:
            return err
        finally:
            await engine.dispose()
        raise AssertionError("the insert should have failed")

    err = asyncio.run(failing_insert())
    record = logging.LogRecord("api", logging.ERROR, __file__, 1, "unhandled %s", (err,), None)
    record.exc_info = (type(err), err, err.__traceback__)
    line = JsonFormatter("api").format(record)
    assert "ada@example.com" not in line
    assert "pm_card_visa" not in line
    assert "NotNullViolation" in line or "not-null" in line


# --- 6. webhooks: bytes, odd shapes, never a 500 ------------------------------------


def tiktok_sign(settings: Settings, body: bytes) -> str:
    return hmac.new(
        settings.tiktok_app_secret.encode(), settings.tiktok_app_key.encode() + body, hashlib.sha256
    ).hexdigest()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/webhooks/stripe", {"Stripe-Signature": "t=1,v1=é"}),
        ("/webhooks/tiktok", {"Authorization": "é" * 64}),
        ("/webhooks/shippo?token=%C3%A9t%C3%A9", {}),
    ],
)
async def test_non_ascii_credentials_are_401_not_500(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    """Finding: compare_digest on str raised for non-ASCII, answering 500."""
    encoded = {k: v.encode("utf-8") for k, v in headers.items()}
    r = await client.post(path, content=b"{}", headers=encoded)
    assert_problem(r, 401)


async def test_stripe_events_from_the_future_are_refused(
    client: httpx.AsyncClient, api_settings: Settings
) -> None:
    payload = stripe_event("charge.updated", {"id": "ch_1"})
    signature = stripe_signature(
        payload, api_settings.stripe_webhook_secret, at=int(time.time()) + 400
    )
    r = await client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": signature}
    )
    assert_problem(r, 401)


ODD_TIKTOK = {
    "fractional update_time": {
        "type": 1,
        "tts_notification_id": "n-frac",
        "shop_id": "7494",
        "data": {"order_id": "576", "order_status": "AWAITING_SHIPMENT", "update_time": "1.5"},
    },
    "long ids": {
        "type": 1,
        "tts_notification_id": "n" * 300,
        "shop_id": "7" * 200,
        "data": {"order_id": "5" * 300, "order_status": "AWAITING_SHIPMENT"},
    },
    "long type": {"type": "x" * 500, "tts_notification_id": "n-type", "shop_id": "7494"},
    "nested junk": {
        "type": 1,
        "tts_notification_id": "n-junk",
        "shop_id": ["7494"],
        "data": "not an object",
    },
}


@pytest.mark.parametrize("case", sorted(ODD_TIKTOK))
async def test_odd_but_signed_tiktok_events_are_recorded_once_never_500(
    client: httpx.AsyncClient, api_settings: Settings, sessionmaker, case: str
) -> None:
    event = dict(ODD_TIKTOK[case])
    if isinstance(event.get("tts_notification_id"), str) and len(event["tts_notification_id"]) < 50:
        event["tts_notification_id"] += uuid.uuid4().hex[:8]
    else:
        event["shop_id_salt"] = uuid.uuid4().hex
    body = json.dumps(event).encode()
    before = await scalar(sessionmaker, "SELECT count(*) FROM inbox_events WHERE provider='tiktok'")
    for attempt in range(2):
        r = await client.post(
            "/webhooks/tiktok",
            content=body,
            headers={"Authorization": tiktok_sign(api_settings, body)},
        )
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is (attempt == 1)
    after = await scalar(sessionmaker, "SELECT count(*) FROM inbox_events WHERE provider='tiktok'")
    assert after == before + 1


async def test_a_signed_json_array_is_recorded_and_answered_400(
    client: httpx.AsyncClient, api_settings: Settings, sessionmaker
) -> None:
    body = json.dumps([{"type": 1, "salt": uuid.uuid4().hex}]).encode()
    stripe_body = json.dumps([uuid.uuid4().hex]).encode()
    r = await client.post(
        "/webhooks/tiktok", content=body, headers={"Authorization": tiktok_sign(api_settings, body)}
    )
    assert_problem(r, 400)
    signature = stripe_signature(stripe_body, api_settings.stripe_webhook_secret)
    r = await client.post(
        "/webhooks/stripe", content=stripe_body, headers={"Stripe-Signature": signature}
    )
    assert_problem(r, 400)
    key = "sha256:" + hashlib.sha256(stripe_body).hexdigest()
    assert (
        await scalar(sessionmaker, "SELECT count(*) FROM inbox_events WHERE event_id=:k", k=key)
        == 1
    )


async def test_card_details_are_never_stored(
    client: httpx.AsyncClient, api_settings: Settings, sessionmaker
) -> None:
    event_id = f"evt_{uuid.uuid4().hex[:20]}"
    charge = {
        "id": "ch_1",
        "payment_method_details": {"card": {"last4": "4242", "exp_year": 2030}},
        "billing_details": {"name": "Ada", "email": "ada@example.com"},
    }
    payload = stripe_event("charge.succeeded", charge, event_id)
    signature = stripe_signature(payload, api_settings.stripe_webhook_secret)
    r = await client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": signature}
    )
    assert r.status_code == 200
    stored = await scalar(
        sessionmaker, "SELECT payload::text FROM inbox_events WHERE event_id = :e", e=event_id
    )
    assert "4242" not in stored
    assert "ada@example.com" not in stored
    assert "ch_1" in stored
