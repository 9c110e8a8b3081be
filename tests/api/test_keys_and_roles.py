"""Keys and roles: staff keys read and cancel, owner keys rotate with a grace period, and a
role by route matrix over every route of the API (a new route must be placed in it)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from devstack.harness import in_process
from fulfil.settings import Settings
from tests.api.conftest import MerchantActor, assert_problem, make_merchant

OPS, OWNER, STAFF = "ops", "owner", "staff"
MERCHANT = {OWNER, STAFF}
ANYONE = {OPS, OWNER, STAFF}

# Who gets past authentication and the role check, per route. Everything under /api.
MATRIX: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/v1/merchants"): {OPS},
    ("GET", "/api/v1/merchants/{merchant_id}"): {OPS},
    ("GET", "/api/v1/merchants/me"): MERCHANT,
    ("PATCH", "/api/v1/merchants/me"): {OWNER},
    ("POST", "/api/v1/merchants/me/keys"): {OWNER},
    ("GET", "/api/v1/merchants/me/keys"): {OWNER},
    ("DELETE", "/api/v1/merchants/me/keys/{key_id}"): {OWNER},
    ("POST", "/api/v1/products"): {OWNER},
    ("GET", "/api/v1/products/{sku}"): MERCHANT,
    ("PATCH", "/api/v1/products/{sku}"): {OWNER},
    ("POST", "/api/v1/discounts"): {OWNER},
    ("POST", "/api/v1/orders"): {OWNER},
    ("GET", "/api/v1/orders"): ANYONE,
    ("GET", "/api/v1/orders/{order_id}"): ANYONE,
    ("POST", "/api/v1/orders/{order_id}/cancel"): ANYONE,
    ("POST", "/api/seller/create-account"): {OWNER},
    ("POST", "/api/checkout/create-session"): {OWNER},
    ("GET", "/api/v1/payouts"): {OPS, OWNER},
    ("GET", "/api/v1/payouts/{payout_id}"): {OPS, OWNER},
    ("POST", "/api/v1/payouts/{payout_id}/dispute"): {OPS, OWNER},
    ("POST", "/api/v1/payouts/{payout_id}/resolve"): {OPS},
    ("POST", "/api/v1/ops/payout-runs"): {OPS},
    ("GET", "/api/v1/ops/reconciliation"): {OPS},
    ("POST", "/api/deploy"): {OWNER},
    ("GET", "/api/deploy"): ANYONE,
    ("POST", "/api/deploy/{deployment_id}/token"): {OWNER},
}


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every operation under /api, as the OpenAPI document lists them."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/api/") or path == "/api/checkout/webhook":
            continue  # (the checkout webhook is a provider's: signed, not keyed)
        found += [(method.upper(), path) for method in sorted(operations)]
    return found


async def staff_key(owner: MerchantActor) -> str:
    r = await owner.client.post(
        "/api/v1/merchants/me/keys", json={"role": "staff"}, headers=owner.auth
    )
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "staff"
    return str(r.json()["api_key"])


def test_every_api_route_is_in_the_matrix(app: FastAPI) -> None:
    assert set(api_routes(app)) == set(MATRIX)


async def test_role_route_matrix(
    app: FastAPI, client: httpx.AsyncClient, merchant: MerchantActor, ops: dict[str, str]
) -> None:
    headers = {
        OPS: ops,
        OWNER: merchant.auth,
        STAFF: {"Authorization": f"Bearer {await staff_key(merchant)}"},
    }
    for method, path in api_routes(app):
        url = re.sub(r"\{[^}]+\}", "nope_1", path)
        extra = {"Idempotency-Key": uuid.uuid4().hex}
        allowed = MATRIX[(method, path)]
        for who in ("none", "bad", OPS, OWNER, STAFF):
            auth = {
                "none": {},
                "bad": {"Authorization": "Bearer fk_not_a_key"},
                **headers,
            }[who]
            r = await client.request(method, url, json={}, headers={**auth, **extra})
            where = f"{who} {method} {path}: {r.status_code} {r.text[:200]}"
            if who in ("none", "bad"):
                assert r.status_code == 401, where
            elif who in allowed:
                assert r.status_code not in (401, 403), where
            else:
                assert r.status_code == 403, where


async def test_staff_reads_and_cancels_but_changes_nothing(
    client: httpx.AsyncClient, merchant: MerchantActor
) -> None:
    await merchant.add_product("STAFF-1", stock=3)
    staff = {"Authorization": f"Bearer {await staff_key(merchant)}"}
    assert (await client.get("/api/v1/products/STAFF-1", headers=staff)).status_code == 200
    assert (await client.get("/api/v1/orders", headers=staff)).status_code == 200
    for method, path, body in [
        ("PATCH", "/api/v1/products/STAFF-1", {"stock": 0}),
        ("PATCH", "/api/v1/products/STAFF-1", {"price": 1}),
        ("POST", "/api/v1/discounts", {"code": "FREE", "percent_off": 100}),
        ("PATCH", "/api/v1/merchants/me", {"webhook_url": "https://evil.example.com/x"}),
        ("POST", "/api/v1/merchants/me/keys", {"role": "owner"}),
    ]:
        assert_problem(await client.request(method, path, json=body, headers=staff), 403)
    product = (await client.get("/api/v1/products/STAFF-1", headers=staff)).json()
    assert (product["stock"], product["price"]) == (3, 1000)


async def test_a_rotated_owner_key_works_for_the_grace_period(
    client: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    owner = await make_merchant(client, ops)
    keys = (await client.get("/api/v1/merchants/me/keys", headers=owner.auth)).json()
    [first] = keys
    assert first["role"] == "owner"
    assert "api_key" not in first
    # The last owner key cannot go.
    r = await client.delete(f"/api/v1/merchants/me/keys/{first['key_id']}", headers=owner.auth)
    assert_problem(r, 409)
    r = await client.post("/api/v1/merchants/me/keys", json={"role": "owner"}, headers=owner.auth)
    new = {"Authorization": f"Bearer {r.json()['api_key']}"}
    r = await client.delete(f"/api/v1/merchants/me/keys/{first['key_id']}", headers=new)
    assert r.status_code == 204
    # Still within KEY_GRACE_SECONDS: the old key works, and says until when.
    assert (await client.get("/api/v1/merchants/me", headers=owner.auth)).status_code == 200
    listed = {
        k["key_id"]: k for k in (await client.get("/api/v1/merchants/me/keys", headers=new)).json()
    }
    assert listed[first["key_id"]]["expires_at"] is not None
    assert listed[first["key_id"]]["last_used_at"] is not None


@pytest.fixture
async def no_grace(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings.model_copy(update={"key_grace_seconds": 0}))
    async with in_process(app) as c:
        yield c


async def test_revoked_keys_stop_working(no_grace: httpx.AsyncClient, ops: dict[str, str]) -> None:
    owner = await make_merchant(no_grace, ops)
    staff_created = await no_grace.post(
        "/api/v1/merchants/me/keys", json={"role": "staff"}, headers=owner.auth
    )
    staff = {"Authorization": f"Bearer {staff_created.json()['api_key']}"}
    assert (await no_grace.get("/api/v1/orders", headers=staff)).status_code == 200
    r = await no_grace.delete(
        f"/api/v1/merchants/me/keys/{staff_created.json()['key_id']}", headers=owner.auth
    )
    assert r.status_code == 204
    assert_problem(await no_grace.get("/api/v1/orders", headers=staff), 401)
    # An owner key rotated with no grace stops at once too.
    [old] = [
        k for k in (await no_grace.get("/api/v1/merchants/me/keys", headers=owner.auth)).json()
    ]
    fresh = await no_grace.post(
        "/api/v1/merchants/me/keys", json={"role": "owner"}, headers=owner.auth
    )
    new = {"Authorization": f"Bearer {fresh.json()['api_key']}"}
    assert (
        await no_grace.delete(f"/api/v1/merchants/me/keys/{old['key_id']}", headers=new)
    ).status_code == 204
    assert_problem(await no_grace.get("/api/v1/merchants/me", headers=owner.auth), 401)
    assert (await no_grace.get("/api/v1/merchants/me", headers=new)).status_code == 200
