"""Liveness, readiness, metrics, OpenAPI, and what a request log line holds."""

from __future__ import annotations

import logging

import httpx
import pytest

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
