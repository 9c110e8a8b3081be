"""Authentication, roles, and problem+json for every kind of error."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from fulfil.settings import Settings
from tests.api.conftest import MerchantActor, assert_problem, error_fields


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/merchants/me"),
        ("POST", "/api/v1/merchants"),
        ("POST", "/api/v1/products"),
        ("GET", "/api/v1/products/MUG-1"),
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/orders/ord_x"),
        ("POST", "/api/v1/orders/ord_x/cancel"),
    ],
)
async def test_missing_key_is_401(client: httpx.AsyncClient, method: str, path: str) -> None:
    r = await client.request(method, path, json={})
    body = assert_problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    assert "key" in body["detail"].lower()


async def test_bad_key_is_401(client: httpx.AsyncClient) -> None:
    for header in ("Bearer fk_not_a_key", "Bearer ", "Basic dXNlcjpwYXNz", "fk_no_scheme"):
        r = await client.get("/api/v1/merchants/me", headers={"Authorization": header})
        assert_problem(r, 401)


async def test_ops_key_on_merchant_endpoint_is_403(
    client: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    assert_problem(await client.get("/api/v1/merchants/me", headers=ops), 403)
    r = await client.post("/api/v1/orders", json={}, headers={**ops, "Idempotency-Key": "k"})
    assert_problem(r, 403)


async def test_merchant_key_on_ops_endpoint_is_403(
    client: httpx.AsyncClient, merchant: MerchantActor
) -> None:
    r = await client.post(
        "/api/v1/merchants", json={"name": "x", "email": "x@example.com"}, headers=merchant.auth
    )
    assert_problem(r, 403)


async def test_unknown_route_and_wrong_method(
    client: httpx.AsyncClient, merchant: MerchantActor
) -> None:
    # Without a key the API says nothing about its routes.
    assert_problem(await client.get("/api/v1/nope"), 401)
    body = assert_problem(await client.get("/api/v1/nope", headers=merchant.auth), 404)
    assert body["type"] == "about:blank"
    assert_problem(await client.get("/nope"), 404)
    r = await client.delete("/api/v1/orders", headers=merchant.auth)
    assert_problem(r, 405)
    assert r.headers["allow"]


async def test_validation_errors_name_the_field(
    client: httpx.AsyncClient, merchant: MerchantActor
) -> None:
    r = await client.post(
        "/api/v1/products",
        json={"sku": "A-1", "name": "A", "price": -1, "currency": "usd", "stock": 1},
        headers=merchant.auth,
    )
    body = assert_problem(r, 422)
    assert set(error_fields(body)) == {"price", "currency"}
    assert all(e["message"] for e in body["errors"])


async def test_malformed_json_is_a_problem(
    client: httpx.AsyncClient, merchant: MerchantActor
) -> None:
    r = await client.post(
        "/api/v1/products",
        content=b"{not json",
        headers={**merchant.auth, "Content-Type": "application/json"},
    )
    body = assert_problem(r, 422)
    assert error_fields(body) == ["body"]


async def test_unexpected_error_is_500_without_internals(api_settings: Settings) -> None:
    app: FastAPI = create_app(api_settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        r = await c.get("/boom")
    body = assert_problem(r, 500)
    assert "hunter2" not in r.text
    assert "RuntimeError" not in r.text
    assert body["title"] == "Internal Server Error"
