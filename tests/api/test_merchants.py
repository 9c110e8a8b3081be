"""Merchants: created by ops, keys shown once and stored hashed, self-service settings."""

from __future__ import annotations

import hashlib
import uuid

import httpx

from fulfil.codec import KeyRing
from fulfil.settings import Settings
from tests.api.conftest import MerchantActor, assert_problem, error_fields, make_merchant, rows


async def test_create_merchant_stores_hashed_key_and_sealed_secret(
    client: httpx.AsyncClient, ops: dict[str, str], sessionmaker, api_settings: Settings
) -> None:
    r = await client.post(
        "/api/v1/merchants",
        json={
            "name": "Candle Co",
            "email": "owner@candles.example",
            "stripe_account": "acct_1Candle",
            "ship_from": {
                "name": "Candle Co",
                "street1": "2 Wick Rd",
                "city": "Austin",
                "state": "TX",
                "zip": "78701",
                "country": "US",
            },
            "shipping_policy": {"rate": "fastest", "carriers": ["usps"]},
            "webhook_url": "https://candles.example/hooks",
        },
        headers=ops,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"merchant_id", "api_key", "webhook_secret"}
    assert created["merchant_id"].startswith("mer_")

    [row] = await rows(
        sessionmaker, "SELECT * FROM merchants WHERE id = :id", id=created["merchant_id"]
    )
    [key] = await rows(
        sessionmaker, "SELECT * FROM api_keys WHERE merchant_id = :id", id=created["merchant_id"]
    )
    assert key["key_hash"] == hashlib.sha256(created["api_key"].encode()).hexdigest()
    assert created["api_key"].startswith(key["prefix"])
    assert key["role"] == "owner"
    assert created["webhook_secret"] not in row["webhook_secret_sealed"]
    ring = KeyRing.parse(api_settings.codec_keys)
    assert ring.open_text(row["webhook_secret_sealed"]) == created["webhook_secret"]

    me = await client.get(
        "/api/v1/merchants/me", headers={"Authorization": f"Bearer {created['api_key']}"}
    )
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["merchant_id"] == created["merchant_id"]
    assert body["stripe_account"] == "acct_1Candle"
    assert body["shipping_policy"] == {"rate": "fastest", "carriers": ["usps"]}
    assert body["ship_from"]["country"] == "US"
    assert body["webhook_url"] == "https://candles.example/hooks"
    assert created["api_key"] not in me.text
    assert created["webhook_secret"] not in me.text


async def test_create_merchant_validates_fields(
    client: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    r = await client.post(
        "/api/v1/merchants",
        json={
            "name": "",
            "email": "not-an-email",
            "stripe_account": "acc_123",
            "ship_from": {"name": "A", "street1": "1", "city": "B", "zip": "1", "country": "usa"},
            "shipping_policy": {"rate": "slowest"},
            "webhook_url": "ftp://example.com",
        },
        headers=ops,
    )
    body = assert_problem(r, 422)
    assert set(error_fields(body)) == {
        "name",
        "email",
        "stripe_account",
        "ship_from.country",
        "shipping_policy.rate",
        "webhook_url",
    }


async def test_tiktok_shop_belongs_to_one_merchant(
    client: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    shop_id = f"shop-{uuid.uuid4().hex[:12]}"
    await make_merchant(client, ops, tiktok_shop_id=shop_id)
    r = await client.post(
        "/api/v1/merchants",
        json={"name": "B", "email": "b@example.com", "tiktok_shop_id": shop_id},
        headers=ops,
    )
    assert_problem(r, 409)


async def test_patch_me(client: httpx.AsyncClient, merchant: MerchantActor) -> None:
    r = await client.patch(
        "/api/v1/merchants/me",
        json={
            "webhook_url": "https://hooks.example.com/shop",
            "shipping_policy": {"rate": "cheapest"},
        },
        headers=merchant.auth,
    )
    assert r.status_code == 200, r.text
    assert r.json()["webhook_url"] == "https://hooks.example.com/shop"
    assert r.json()["shipping_policy"] == {"rate": "cheapest", "carriers": None}

    r = await client.patch(
        "/api/v1/merchants/me", json={"webhook_url": None}, headers=merchant.auth
    )
    assert r.status_code == 200
    assert r.json()["webhook_url"] is None
    assert r.json()["shipping_policy"] == {"rate": "cheapest", "carriers": None}

    r = await client.patch("/api/v1/merchants/me", json={"name": "renamed"}, headers=merchant.auth)
    assert error_fields(assert_problem(r, 422)) == ["name"]
    r = await client.patch(
        "/api/v1/merchants/me", json={"webhook_url": "nope"}, headers=merchant.auth
    )
    assert error_fields(assert_problem(r, 422)) == ["webhook_url"]
