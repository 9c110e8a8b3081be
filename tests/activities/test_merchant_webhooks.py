"""Merchant webhook delivery: SSRF checked again at delivery against the address connected
to, no redirects, and a circuit breaker that parks an endpoint that keeps failing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import (
    WEBHOOK_FAILED,
    WEBHOOK_PARKED,
    NotifyActivities,
    WebhookPolicy,
    post_pinned,
)
from db import order_records
from db.models import Merchant
from devstack.harness import serve_in_thread
from fulfil.codec import KeyRing
from fulfil.enums import OrderStatus
from fulfil.messages.orders import MerchantWebhook
from fulfil.outbound import Destination
from fulfil.settings import Settings
from fulfil.signatures import verify_merchant_webhook
from tests.db.conftest import make_order, make_shop

SECRET = "whsec_test_merchant"


class Endpoint:
    """A stand-in merchant endpoint: records requests, answers what it is told."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.app = FastAPI()

        @self.app.post("/{path:path}")
        async def receive(path: str, request: Request) -> Response:
            self.requests.append(
                {"path": path, "headers": dict(request.headers), "body": await request.body()}
            )
            if self.status in (301, 302, 307):
                return Response(status_code=self.status, headers={"Location": "/elsewhere"})
            return Response(status_code=self.status, content=b"x" * 10_000_000)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    stand_in = Endpoint()
    with serve_in_thread(stand_in.app) as url:
        yield stand_in, url


@pytest.fixture
async def notify(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    endpoint: tuple[Endpoint, str],
) -> AsyncIterator[NotifyActivities]:
    stand_in, url = endpoint
    stand_in.requests.clear()
    stand_in.status = 200
    async with httpx.AsyncClient(timeout=5) as http:
        yield NotifyActivities(
            sessionmaker,
            http,
            email_api_base=None,
            email_from="x@example.com",
            keyring=KeyRing.parse(settings.codec_keys),
            webhooks=WebhookPolicy(
                allowlist=[f"{url}/allowed/"],
                require_https=False,
                breaker_failures=3,
                breaker_cooldown=timedelta(minutes=15),
            ),
        )


async def order_event(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, webhook_url: str
) -> MerchantWebhook:
    merchant_id = await make_shop(sessionmaker, {"A": 5})
    order_id = await make_order(sessionmaker, merchant_id, [("A", 1)])
    async with sessionmaker.begin() as session:
        merchant = await session.get(Merchant, merchant_id)
        assert merchant is not None
        merchant.webhook_url = webhook_url  # as if set before the rules, or DNS changed since
        merchant.webhook_secret_sealed = KeyRing.parse(settings.codec_keys).seal_text(SECRET)
        order = await order_records.lock_order(session, order_id)
        assert order is not None
        event_id, _ = await order_records.record_status(
            session, order, OrderStatus.PAID, "payment.succeeded", "", None
        )
    return MerchantWebhook(order_id=order_id, event_id=event_id)


async def merchant_of(sessionmaker: async_sessionmaker[AsyncSession], order_id: str) -> Merchant:
    async with sessionmaker() as session:
        order = await order_records.get_order(session, order_id)
        assert order is not None
        merchant = await session.get(Merchant, order.merchant_id)
        assert merchant is not None
        return merchant


async def test_allowlisted_endpoint_gets_the_signed_event(
    notify: NotifyActivities, sessionmaker, settings: Settings, endpoint: tuple[Endpoint, str]
) -> None:
    stand_in, url = endpoint
    req = await order_event(sessionmaker, settings, f"{url}/allowed/shop")
    await ActivityEnvironment().run(notify.deliver_merchant_webhook, req)
    [sent] = stand_in.requests
    assert verify_merchant_webhook(SECRET, sent["body"], sent["headers"]["fulfil-signature"])


async def test_a_url_that_now_leads_to_loopback_is_not_called(
    notify: NotifyActivities, sessionmaker, settings: Settings, endpoint: tuple[Endpoint, str]
) -> None:
    """Finding: the worker POSTed to loopback (127.0.0.1:7233, :5432, the sandbox's reset)."""
    stand_in, url = endpoint
    req = await order_event(sessionmaker, settings, f"{url}/not-allowed/reset")
    with pytest.raises(ApplicationError) as failed:
        await ActivityEnvironment().run(notify.deliver_merchant_webhook, req)
    assert failed.value.type == WEBHOOK_FAILED
    assert "loopback" in str(failed.value)
    assert stand_in.requests == []
    merchant = await merchant_of(sessionmaker, req.order_id)
    assert merchant.webhook_failures == 1
    assert "loopback" in (merchant.webhook_last_error or "")


async def test_redirects_are_not_followed(
    notify: NotifyActivities, sessionmaker, settings: Settings, endpoint: tuple[Endpoint, str]
) -> None:
    stand_in, url = endpoint
    stand_in.status = 302
    req = await order_event(sessionmaker, settings, f"{url}/allowed/moved")
    with pytest.raises(ApplicationError, match="answered 302"):
        await ActivityEnvironment().run(notify.deliver_merchant_webhook, req)
    assert [r["path"] for r in stand_in.requests] == ["allowed/moved"]


async def test_a_failing_endpoint_is_parked_then_calls_nothing(
    notify: NotifyActivities, sessionmaker, settings: Settings, endpoint: tuple[Endpoint, str]
) -> None:
    stand_in, url = endpoint
    stand_in.status = 503
    req = await order_event(sessionmaker, settings, f"{url}/allowed/down")
    raised = []
    for _ in range(4):
        with pytest.raises(ApplicationError) as failed:
            await ActivityEnvironment().run(notify.deliver_merchant_webhook, req)
        raised.append(failed.value)
    assert [e.type for e in raised] == [
        WEBHOOK_FAILED,
        WEBHOOK_FAILED,
        WEBHOOK_PARKED,
        WEBHOOK_PARKED,
    ]
    assert len(stand_in.requests) == 3  # the fourth attempt called nothing
    assert raised[-1].next_retry_delay is not None
    assert raised[-1].next_retry_delay > timedelta(minutes=14)
    merchant = await merchant_of(sessionmaker, req.order_id)
    assert merchant.webhook_parked_until is not None


async def test_pinned_delivery_connects_to_the_checked_address(
    endpoint: tuple[Endpoint, str],
) -> None:
    """A name that resolved to a public address is called at that address, Host kept."""
    stand_in, url = endpoint
    stand_in.requests.clear()
    stand_in.status = 204
    port = int(url.rsplit(":", 1)[1])
    destination = Destination(
        url=f"http://shop-{uuid.uuid4().hex[:6]}.example:{port}/hook",
        host="shop.example",
        port=port,
        addresses=("127.0.0.1",),
        allowlisted=False,
    )
    async with httpx.AsyncClient(timeout=5) as http:
        status = await post_pinned(http, destination, b"{}", {"Content-Type": "application/json"})
    assert status == 204
    [sent] = stand_in.requests
    assert sent["headers"]["host"].startswith("shop-")
