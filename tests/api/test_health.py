"""Liveness, readiness, metrics, OpenAPI, and what a request log line holds."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from fulfil.logs import JsonFormatter
from tests.api.conftest import MerchantActor, assert_problem, order_body


async def test_livez(client: httpx.AsyncClient) -> None:
    r = await client.get("/livez")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_names_what_is_down(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    body = assert_problem(r, 503)
    assert body["checks"] == {"postgres": "ok", "redis": "ok", "temporal": "down"}
    assert "temporal" in body["detail"]


async def test_metrics(client: httpx.AsyncClient, merchant: MerchantActor) -> None:
    await merchant.add_product("MET-1")
    assert (await merchant.place(order_body(("MET-1", 1)))).status_code == 202
    await client.get("/livez")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'http_requests_total{method="GET",route="/livez",status="200"}' in text
    assert 'orders_created_total{source="storefront"}' in text
    bucket = 'http_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/v1/orders"}'
    assert bucket in text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text, 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_business_metrics_count_what_the_tables_hold(
    client: httpx.AsyncClient, merchant: MerchantActor, sessionmaker: Any
) -> None:
    before = (await client.get("/metrics")).text
    await merchant.add_product("BIZ-1")
    assert (await merchant.place(order_body(("BIZ-1", 1)))).status_code == 202
    # As the workflows would: a deployment that rolled back, a payout released.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO deployments (id, merchant_id, package_id, package_name, "
                "package_version, account_id, status, steps, resources) VALUES "
                "(:id, :m, 'p', 'P', '1', 'acc', 'rolled_back', '[]', '[]')"
            ),
            {"id": f"dep_{uuid.uuid4().hex[:20]}", "m": merchant.merchant_id},
        )
        await session.execute(
            text(
                "INSERT INTO payouts (id, merchant_id, source, stripe_account, amount, "
                "platform_fee, seller_amount, currency, status) VALUES "
                "(:id, :m, 'checkout', 'acct_x', 1000, 150, 850, 'USD', 'released')"
            ),
            {"id": f"pay_{uuid.uuid4().hex[:20]}", "m": merchant.merchant_id},
        )
    # (read at most every 5 s: wait for the next read)
    deadline = time.monotonic() + 15
    while True:
        after = (await client.get("/metrics")).text
        if (
            sample(after, "fulfil_deployments", status="rolled_back")
            > sample(before, "fulfil_deployments", status="rolled_back")
            or time.monotonic() > deadline
        ):
            break
        await asyncio.sleep(0.5)
    assert sample(after, "fulfil_orders", source="storefront", status="pending") >= 1 + sample(
        before, "fulfil_orders", source="storefront", status="pending"
    )
    assert sample(after, "fulfil_deployments", status="rolled_back") == 1 + sample(
        before, "fulfil_deployments", status="rolled_back"
    )
    assert sample(after, "fulfil_payouts_released_total", currency="USD") == 1 + sample(
        before, "fulfil_payouts_released_total", currency="USD"
    )
    assert sample(after, "fulfil_payouts_released_amount_total", currency="USD") == 850 + sample(
        before, "fulfil_payouts_released_amount_total", currency="USD"
    )
    assert "fulfil_labels_bought_total" in after
    assert "fulfil_webhook_endpoints_parked" in after


async def test_openapi(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert {t["name"] for t in spec["tags"]} >= {"merchants", "catalogue", "orders", "webhooks"}
    post = spec["paths"]["/api/v1/orders"]["post"]
    assert post["tags"] == ["orders"]
    assert set(post["responses"]) >= {"202", "400", "401", "409", "422"}
    assert "application/problem+json" in post["responses"]["422"]["content"]
    assert (await client.get("/docs")).status_code == 200


async def test_request_log_line(merchant: MerchantActor, caplog: pytest.LogCaptureFixture) -> None:
    await merchant.add_product("LOG-1")
    with caplog.at_level(logging.INFO, logger="api.request"):
        r = await merchant.place(order_body(("LOG-1", 1)))
    order_id = r.json()["order_id"]
    [record] = [
        rec
        for rec in caplog.records
        if rec.name == "api.request" and getattr(rec, "order_id", None) == order_id
    ]
    line = JsonFormatter("api").format(record)
    assert record.__dict__["method"] == "POST"
    assert record.__dict__["route"] == "/api/v1/orders"
    assert record.__dict__["status"] == 202
    assert record.__dict__["merchant_id"] == merchant.merchant_id
    assert record.__dict__["duration_ms"] >= 0
    assert merchant.api_key not in line
    assert "Bearer" not in line
    assert "ada@example.com" not in line
