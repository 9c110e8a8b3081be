"""Products and discounts: validation, duplicates, tenancy, stock against reservations."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from tests.api.conftest import MerchantActor, assert_problem, error_fields


async def test_product_lifecycle(client: httpx.AsyncClient, merchant: MerchantActor) -> None:
    created = await merchant.add_product("MUG-1", price=1250, stock=7)
    assert created == {
        "sku": "MUG-1",
        "name": "Mug-1",
        "price": 1250,
        "currency": "USD",
        "stock": 7,
        "reserved": 0,
        "weight_grams": None,
    }
    r = await client.get("/api/v1/products/MUG-1", headers=merchant.auth)
    assert r.status_code == 200
    assert r.json() == created

    r = await client.patch(
        "/api/v1/products/MUG-1", json={"stock": 3, "price": 999}, headers=merchant.auth
    )
    assert r.status_code == 200, r.text
    assert (r.json()["stock"], r.json()["price"]) == (3, 999)


async def test_duplicate_sku_is_409(client: httpx.AsyncClient, merchant: MerchantActor) -> None:
    await merchant.add_product("DUP-1")
    r = await client.post(
        "/api/v1/products",
        json={"sku": "DUP-1", "name": "Again", "price": 1, "currency": "USD", "stock": 1},
        headers=merchant.auth,
    )
    body = assert_problem(r, 409)
    assert error_fields(body) == ["sku"]


async def test_same_sku_for_two_merchants_is_fine(
    merchant: MerchantActor, other_merchant: MerchantActor
) -> None:
    await merchant.add_product("SHARED-1")
    await other_merchant.add_product("SHARED-1")


async def test_product_of_another_merchant_is_404(
    client: httpx.AsyncClient, merchant: MerchantActor, other_merchant: MerchantActor
) -> None:
    await merchant.add_product("MINE-1")
    assert_problem(await client.get("/api/v1/products/MINE-1", headers=other_merchant.auth), 404)
    r = await client.patch(
        "/api/v1/products/MINE-1", json={"stock": 1}, headers=other_merchant.auth
    )
    assert_problem(r, 404)


async def test_product_validation(client: httpx.AsyncClient, merchant: MerchantActor) -> None:
    r = await client.post(
        "/api/v1/products",
        json={"sku": "bad sku!", "name": "X", "price": 1, "currency": "US", "stock": -1},
        headers=merchant.auth,
    )
    assert set(error_fields(assert_problem(r, 422))) == {"sku", "currency", "stock"}
    await merchant.add_product("VAL-1")
    r = await client.patch("/api/v1/products/VAL-1", json={"price": -5}, headers=merchant.auth)
    assert error_fields(assert_problem(r, 422)) == ["price"]
    r = await client.patch("/api/v1/products/VAL-1", json={"stok": 5}, headers=merchant.auth)
    assert error_fields(assert_problem(r, 422)) == ["stok"]


async def test_stock_cannot_go_below_reserved(
    client: httpx.AsyncClient, merchant: MerchantActor, sessionmaker
) -> None:
    await merchant.add_product("RES-1", stock=10)
    async with sessionmaker.begin() as session:
        await session.execute(
            text("UPDATE products SET reserved = 4 WHERE merchant_id = :m AND sku = 'RES-1'"),
            {"m": merchant.merchant_id},
        )
    r = await client.get("/api/v1/products/RES-1", headers=merchant.auth)
    assert r.json()["reserved"] == 4
    r = await client.patch("/api/v1/products/RES-1", json={"stock": 3}, headers=merchant.auth)
    body = assert_problem(r, 409)
    assert error_fields(body) == ["stock"]
    r = await client.patch("/api/v1/products/RES-1", json={"stock": 4}, headers=merchant.auth)
    assert r.status_code == 200
    assert r.json()["stock"] == 4


async def test_discounts(client: httpx.AsyncClient, merchant: MerchantActor) -> None:
    r = await client.post(
        "/api/v1/discounts", json={"code": "welcome10", "percent_off": 10}, headers=merchant.auth
    )
    assert r.status_code == 201, r.text
    assert r.json() == {
        "code": "WELCOME10",
        "percent_off": 10,
        "amount_off": None,
        "currency": None,
    }
    r = await client.post(
        "/api/v1/discounts", json={"code": "FIVE", "amount_off": 500}, headers=merchant.auth
    )
    assert r.status_code == 201, r.text
    assert r.json()["currency"] == "USD"

    r = await client.post(
        "/api/v1/discounts", json={"code": "WELCOME10", "percent_off": 5}, headers=merchant.auth
    )
    assert error_fields(assert_problem(r, 409)) == ["code"]

    for bad, field in [
        ({"code": "BOTH", "percent_off": 10, "amount_off": 100}, "amount_off"),
        ({"code": "NONE"}, "amount_off"),
        ({"code": "BIG", "percent_off": 101}, "percent_off"),
        ({"code": "ZERO", "percent_off": 0}, "percent_off"),
        ({"code": "NEG", "amount_off": -1}, "amount_off"),
        ({"code": "sp ace", "percent_off": 5}, "code"),
    ]:
        r = await client.post("/api/v1/discounts", json=bad, headers=merchant.auth)
        assert field in error_fields(assert_problem(r, 422)), (bad, r.text)
