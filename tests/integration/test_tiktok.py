"""TikTok Shop orders: signed webhook → order → label → tracking pushed to TikTok → delivered."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import InboxEvent
from tests.integration.support import create_merchant, eventually
from tests.integration.test_order_placement import ADDRESS, SHIP_FROM, sandbox_ledger
from tests.integration.test_shipping import DAY, HOUR, advance, labels_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def tiktok_shop(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> dict[str, Any]:
    shop_id = "7494" + "".join(secrets.choice("0123456789") for _ in range(15))
    merchant = await create_merchant(
        http, engine["api"], ops_headers, tiktok_shop_id=shop_id, ship_from=SHIP_FROM
    )
    merchant["shop_id"] = shop_id
    return merchant


async def tiktok_order(http: httpx.AsyncClient, sandbox: str, shop_id: str, **flags: Any) -> str:
    response = await http.post(
        f"{sandbox}/_sandbox/tiktok/orders",
        json={
            "shop_id": shop_id,
            "items": [{"sku": "CANDLE-1", "quantity": 2, "price": 2400}],
            "address": ADDRESS,
            **flags,
        },
    )
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def all_orders(
    http: httpx.AsyncClient, api: str, merchant: dict[str, Any], **filters: str
) -> list[dict[str, Any]]:
    """Every page of the merchant's order list."""
    orders: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "100", **filters}
        if cursor:
            params["starting_after"] = cursor
        response = await http.get(
            f"{api}/api/v1/orders", params=params, headers=merchant["headers"]
        )
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        page = response.json()
        orders += page["data"]
        if not page["has_more"]:
            return orders
        cursor = page["data"][-1]["order_id"]


async def ours(
    http: httpx.AsyncClient, api: str, merchant: dict[str, Any], tiktok_id: str, statuses: set[str]
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        for order in await all_orders(http, api, merchant, source="tiktok"):
            if order["external_id"] == tiktok_id and order["status"] in statuses:
                return order
        return None

    found: dict[str, Any] = await eventually(check, timeout=90)
    return found


async def test_tiktok_order_is_shipped_tracked_and_delivered(
    engine: dict[str, str], http: httpx.AsyncClient, tiktok_shop: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    tiktok_id = await tiktok_order(http, sandbox, tiktok_shop["shop_id"])

    order = await ours(http, api, tiktok_shop, tiktok_id, {"fulfilling", "shipped"})
    assert order["source"] == "tiktok"
    assert order["totals"]["subtotal"] == 4800

    async def pushed() -> dict[str, Any] | None:
        detail = (await http.get(f"{sandbox}/_sandbox/tiktok/orders/{tiktok_id}")).json()
        return detail if detail.get("tracking_number") else None

    detail = await eventually(pushed, timeout=60)
    await advance(http, sandbox, 2 * HOUR)
    order = await ours(http, api, tiktok_shop, tiktok_id, {"shipped"})
    assert order["shipment"]["tracking_number"] == detail["tracking_number"]
    assert order["shipment"]["carrier"]

    # A TikTok order is cancelled on TikTok, not through our API.
    response = await http.post(
        f"{api}/api/v1/orders/{order['order_id']}/cancel", headers=tiktok_shop["headers"]
    )
    assert response.status_code == 409

    await advance(http, sandbox, 7 * DAY)
    order = await ours(http, api, tiktok_shop, tiktok_id, {"delivered"})
    ledger = await sandbox_ledger(http, sandbox)
    assert len(labels_for(ledger, order["order_id"])) == 1
    shipments = [s for s in ledger["tiktok_shipments"] if s["order_id"] == tiktok_id]
    assert [s["tracking_number"] for s in shipments] == [detail["tracking_number"]]


async def test_cancel_before_the_label_buys_nothing(
    engine: dict[str, str], http: httpx.AsyncClient, tiktok_shop: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    # Shippo is down: the shipment cannot get past quoting rates.
    await http.post(
        f"{sandbox}/_sandbox/faults",
        json={"provider": "shippo", "path": "/shipments", "status": 503},
    )
    try:
        tiktok_id = await tiktok_order(http, sandbox, tiktok_shop["shop_id"])
        order = await ours(http, api, tiktok_shop, tiktok_id, {"fulfilling"})
        response = await http.post(f"{sandbox}/_sandbox/tiktok/orders/{tiktok_id}/cancel")
        assert response.status_code == 200, response.text
        order = await ours(http, api, tiktok_shop, tiktok_id, {"cancelled"})
    finally:
        await http.delete(f"{sandbox}/_sandbox/faults")
    assert labels_for(await sandbox_ledger(http, sandbox), order["order_id"]) == []


async def test_cancel_after_the_label_voids_it(
    engine: dict[str, str], http: httpx.AsyncClient, tiktok_shop: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    # TikTok refuses the tracking push for now, so the order is still cancellable there.
    await http.post(
        f"{sandbox}/_sandbox/faults",
        json={"provider": "tiktok", "path": "/ship", "status": 503},
    )
    try:
        tiktok_id = await tiktok_order(http, sandbox, tiktok_shop["shop_id"])

        async def label_bought() -> dict[str, Any] | None:
            for order in await all_orders(http, api, tiktok_shop, source="tiktok"):
                if order["external_id"] == tiktok_id and order["shipment"]:
                    return order
            return None

        order = await eventually(label_bought, timeout=60)
        response = await http.post(f"{sandbox}/_sandbox/tiktok/orders/{tiktok_id}/cancel")
        assert response.status_code == 200, response.text

        async def cancel_recorded() -> bool:
            deliveries = (
                await http.get(
                    f"{sandbox}/_sandbox/tiktok/deliveries", params={"order_id": tiktok_id}
                )
            ).json()
            return any(
                d["order_status"] == "CANCELLED" and d["response_status"] == 200 for d in deliveries
            )

        await eventually(cancel_recorded)
    finally:
        await http.delete(f"{sandbox}/_sandbox/faults")
    order = await ours(http, api, tiktok_shop, tiktok_id, {"cancelled"})
    ledger = await sandbox_ledger(http, sandbox)
    label = labels_for(ledger, order["order_id"])[0]
    assert [r for r in ledger["label_refunds"] if r["transaction"] == label["id"]]
    assert order["shipment"]["status"] == "voided"


async def test_bad_signature_is_401_and_records_nothing(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    tiktok_shop: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    notification_id = secrets.token_hex(8)
    body = json.dumps(
        {
            "type": 1,
            "tts_notification_id": notification_id,
            "shop_id": tiktok_shop["shop_id"],
            "timestamp": 1764250000,
            "data": {"order_id": "1", "order_status": "AWAITING_SHIPMENT", "update_time": 1},
        }
    )
    response = await http.post(
        f"{engine['api']}/webhooks/tiktok",
        content=body,
        headers={"Authorization": "0" * 64, "Content-Type": "application/json"},
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(InboxEvent.event_id == notification_id)
        )
    assert count == 0


# Its own deadlines add up to more than the suite's 180 s hang guard.
@pytest.mark.timeout(660)
async def test_two_hundred_orders_with_repeated_reordered_and_forged_webhooks(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    tiktok_shop: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """30 % delivered twice, 10 % out of order, 10 % first with a bad signature:
    still exactly one order, one label and one TikTok shipment each."""
    api, sandbox = engine["api"], engine["sandbox"]
    shop_id = tiktok_shop["shop_id"]

    def flags(i: int) -> dict[str, bool]:
        kind = i % 10
        return {"duplicate": kind < 3, "reorder": kind == 3, "bad_signature": kind == 4}

    tiktok_ids: list[str] = []
    for batch in range(0, 200, 20):
        tiktok_ids += await asyncio.gather(
            *(tiktok_order(http, sandbox, shop_id, **flags(i)) for i in range(batch, batch + 20))
        )
    assert len(set(tiktok_ids)) == 200

    async def all_pushed() -> bool:
        ledger = await sandbox_ledger(http, sandbox)
        pushed = {s["order_id"] for s in ledger["tiktok_shipments"]}
        return set(tiktok_ids) <= pushed

    await eventually(all_pushed, timeout=300, interval=1)

    orders = await all_orders(http, api, tiktok_shop, source="tiktok")
    by_external: dict[str, list[dict[str, Any]]] = {}
    for order in orders:
        by_external.setdefault(order["external_id"], []).append(order)
    assert sorted(by_external) == sorted(tiktok_ids)
    assert all(len(rows) == 1 for rows in by_external.values())

    ledger = await sandbox_ledger(http, sandbox)
    for order in orders:
        assert len(labels_for(ledger, order["order_id"])) == 1, order["order_id"]
    shipments = [s for s in ledger["tiktok_shipments"] if s["order_id"] in by_external]
    assert len(shipments) == 200
    assert len({s["package_id"] for s in shipments}) == 200

    deliveries = [
        d
        for d in (await http.get(f"{sandbox}/_sandbox/tiktok/deliveries")).json()
        if d["order_id"] in by_external
    ]
    forged = [d for d in deliveries if not d["signature_ok"]]
    assert len({d["order_id"] for d in forged}) == 20
    assert all(d["response_status"] == 401 for d in forged)
    assert len([d for d in deliveries if d["kind"] == "duplicate"]) >= 60
    assert len([d for d in deliveries if d["kind"] == "stale"]) >= 20
    signed_ids = {d["notification_id"] for d in deliveries if d["signature_ok"]}
    async with sessionmaker() as session:
        recorded = (
            await session.scalars(
                select(InboxEvent.event_id).where(
                    InboxEvent.provider == "tiktok", InboxEvent.event_id.in_(signed_ids)
                )
            )
        ).all()
    # Each signed notification recorded once; repeats added nothing.
    assert sorted(recorded) == sorted(signed_ids)

    await advance(http, sandbox, 7 * DAY)

    async def all_delivered() -> bool:
        delivered = await all_orders(http, api, tiktok_shop, source="tiktok", status="delivered")
        return len(delivered) == 200

    await eventually(all_delivered, timeout=300, interval=2)
