"""Order lists: newest first, keyset pagination, filters, tenancy."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from tests.api.conftest import MerchantActor, assert_problem, error_fields, order_body


async def test_pagination_and_filters(
    client: httpx.AsyncClient,
    merchant: MerchantActor,
    other_merchant: MerchantActor,
    sessionmaker,
) -> None:
    await merchant.add_product("PEN-1", stock=100)
    await other_merchant.add_product("PEN-1", stock=100)
    placed = []
    for _ in range(5):
        r = await merchant.place(order_body(("PEN-1", 1)))
        assert r.status_code == 202
        placed.append(r.json()["order_id"])
    await other_merchant.place(order_body(("PEN-1", 1)))
    newest_first = placed[::-1]

    seen: list[str] = []
    after = None
    pages = []
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if after:
            params["starting_after"] = after
        r = await client.get("/api/v1/orders", params=params, headers=merchant.auth)
        assert r.status_code == 200, r.text
        page = r.json()
        ids = [o["order_id"] for o in page["data"]]
        seen += ids
        pages.append((len(ids), page["has_more"]))
        if not page["has_more"]:
            break
        after = ids[-1]
    assert seen == newest_first
    assert pages == [(2, True), (2, True), (1, False)]

    r = await client.get("/api/v1/orders", headers=merchant.auth)
    assert [o["order_id"] for o in r.json()["data"]] == newest_first
    assert r.json()["data"][0]["items"] == [{"sku": "PEN-1", "quantity": 1, "unit_price": 1000}]

    async with sessionmaker.begin() as session:
        await session.execute(
            text("UPDATE orders SET status = 'paid' WHERE id = :id"), {"id": placed[1]}
        )
    r = await client.get("/api/v1/orders", params={"status": "paid"}, headers=merchant.auth)
    assert [o["order_id"] for o in r.json()["data"]] == [placed[1]]
    r = await client.get("/api/v1/orders", params={"source": "tiktok"}, headers=merchant.auth)
    assert r.json() == {"data": [], "has_more": False}
    r = await client.get(
        "/api/v1/orders",
        params={"source": "storefront", "status": "pending"},
        headers=merchant.auth,
    )
    assert len(r.json()["data"]) == 4


async def test_list_validation(
    client: httpx.AsyncClient, merchant: MerchantActor, other_merchant: MerchantActor
) -> None:
    for params, field in [
        ({"status": "lost"}, "status"),
        ({"source": "ebay"}, "source"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
    ]:
        r = await client.get("/api/v1/orders", params=params, headers=merchant.auth)
        assert error_fields(assert_problem(r, 422)) == [field], params
    # A cursor that names no order of the merchant's: nothing to page after.
    r = await client.get(
        "/api/v1/orders", params={"starting_after": "ord_unknown"}, headers=merchant.auth
    )
    assert error_fields(assert_problem(r, 404)) == ["starting_after"]

    await other_merchant.add_product("CUP-1")
    theirs = (await other_merchant.place(order_body(("CUP-1", 1)))).json()["order_id"]
    r = await client.get("/api/v1/orders", params={"starting_after": theirs}, headers=merchant.auth)
    assert error_fields(assert_problem(r, 404)) == ["starting_after"]
