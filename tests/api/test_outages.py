"""When PostgreSQL or Redis does not answer, the API says so: 503 problem+json with
``Retry-After`` (never a 500 or a hang), nothing is written, and what can go on goes on."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from api.app import create_app
from devstack.harness import in_process
from fulfil.settings import Settings
from tests.api.conftest import MerchantActor, assert_problem, order_body, scalar, stripe_event
from tests.api.conftest import stripe_signature as sign_stripe
from tests.api.test_deploy import body as deploy_body
from tests.conftest import free_port


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


@pytest.fixture
async def without_postgres(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    settings = api_settings.model_copy(
        update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nope"}
    )
    async with in_process(create_app(settings)) as client:
        yield client


async def test_postgres_down_is_503_with_retry_after(
    without_postgres: httpx.AsyncClient, api_settings: Settings, ops: dict[str, str]
) -> None:
    merchant_key = {"Authorization": "Bearer fk_not_cached_anywhere"}
    payload = stripe_event("payment_intent.succeeded", {"id": "pi_1"})
    signed = {"Stripe-Signature": sign_stripe(payload, api_settings.stripe_webhook_secret)}
    for method, path, headers, body in [
        ("GET", "/api/v1/orders/ord_1", ops, None),  # the route's query
        ("GET", "/api/v1/orders/ord_1", merchant_key, None),  # the key lookup, before routing
        ("POST", "/webhooks/stripe", signed, payload),  # not acknowledged: Stripe retries
    ]:
        r = await without_postgres.request(method, path, headers=headers, content=body)
        problem = assert_problem(r, 503)
        assert r.headers["retry-after"] == "5"
        assert "nothing was changed" in problem["detail"]
    assert (await without_postgres.get("/readyz")).status_code == 503
    assert (await without_postgres.get("/livez")).status_code == 200


async def test_a_hung_postgres_is_503_by_the_deadline(
    api_settings: Settings, ops: dict[str, str], silent_server: int
) -> None:
    settings = api_settings.model_copy(
        update={
            "database_url": f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/nope",
            "api_request_deadline_seconds": 1.0,
            "database_connect_timeout_seconds": 30,
        }
    )
    async with in_process(create_app(settings)) as client:
        started = time.monotonic()
        r = await client.get("/api/v1/orders/ord_1", headers=ops)
        took = time.monotonic() - started
        assert_problem(r, 503)
        assert took < 5, took


async def test_redis_down_limits_nothing_and_a_deploy_is_503(
    merchant: MerchantActor, api_settings: Settings, sessionmaker
) -> None:
    settings = api_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "rate_limit_per_minute": 2}
    )
    async with in_process(create_app(settings)) as client:
        # Rate limits fail open: more requests than the limit, all answered.
        for _ in range(4):
            r = await client.get("/api/v1/merchants/me", headers=merchant.auth)
            assert r.status_code == 200, r.text
        await merchant.add_product("OUTAGE-1", stock=5)
        placed = await merchant.place(order_body(("OUTAGE-1", 1)), client=client)
        assert placed.status_code == 202, placed.text
        # The token vault lives in Redis: no deployment can start, and none is written.
        r = await client.post("/api/deploy", json=deploy_body(), headers=merchant.auth)
        assert_problem(r, 503)
        written = await scalar(
            sessionmaker,
            "SELECT count(*) FROM deployments WHERE merchant_id = :m",
            m=merchant.merchant_id,
        )
        assert written == 0
