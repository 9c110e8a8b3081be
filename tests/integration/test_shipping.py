"""Storefront orders ship and are tracked to the end: labels, rate policy, webhooks, polling."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration.support import create_merchant, eventually
from tests.integration.test_order_placement import (
    ADDRESS,
    SHIP_FROM,
    order_when,
    place,
    sandbox_ledger,
)

pytestmark = pytest.mark.integration

HOUR = 3600
DAY = 24 * HOUR


async def merchant_with_products(
    http: httpx.AsyncClient,
    api: str,
    ops_headers: dict[str, str],
    **fields: Any,
) -> dict[str, Any]:
    merchant = await create_merchant(http, api, ops_headers, ship_from=SHIP_FROM, **fields)
    response = await http.post(
        f"{api}/api/v1/products",
        json={
            "sku": "MUG-1",
            "name": "Mug",
            "price": 1800,
            "currency": "USD",
            "stock": 500,
            "weight_grams": 700,
        },
        headers=merchant["headers"],
    )
    assert response.status_code == 201, response.text
    return merchant


async def advance(http: httpx.AsyncClient, sandbox: str, seconds: int) -> None:
    response = await http.post(f"{sandbox}/_sandbox/clock/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text


def labels_for(ledger: dict[str, Any], order_id: str) -> list[dict[str, Any]]:
    return [label for label in ledger["labels"] if label.get("metadata") == f"order:{order_id}"]


async def labelled(
    http: httpx.AsyncClient, api: str, merchant: dict[str, Any], order_id: str
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        order = (
            await http.get(f"{api}/api/v1/orders/{order_id}", headers=merchant["headers"])
        ).json()
        shipment = order.get("shipment") or {}
        return order if shipment.get("tracking_number") else None

    result: dict[str, Any] = await eventually(check, timeout=60)
    return result


async def test_storefront_order_ships_and_is_delivered(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await merchant_with_products(http, api, ops_headers)
    order_id = (await place(http, api, merchant)).json()["order_id"]

    order = await labelled(http, api, merchant, order_id)
    assert order["status"] == "fulfilling"
    shipment = order["shipment"]
    assert shipment["carrier"]
    assert shipment["label_url"]

    await advance(http, sandbox, 2 * HOUR)
    order = await order_when(http, api, merchant, order_id, {"shipped"})
    assert order["shipment"]["status"] == "transit"

    await advance(http, sandbox, 7 * DAY)
    order = await order_when(http, api, merchant, order_id, {"delivered"})
    assert order["shipment"]["status"] == "delivered"
    types = [e["type"] for e in order["events"]]
    assert types.index("order.shipped") < types.index("order.delivered")
    assert len(labels_for(await sandbox_ledger(http, sandbox), order_id)) == 1

    async def emails() -> bool:
        sent = [e for e in (await sandbox_ledger(http, sandbox))["emails"] if order_id in str(e)]
        subjects = " ".join(e["subject"] for e in sent)
        return "on its way" in subjects and "delivered" in subjects

    await eventually(emails)


@pytest.mark.parametrize(
    ("policy", "servicelevel"),
    [
        ({"rate": "cheapest"}, "usps_ground_advantage"),
        ({"rate": "fastest"}, "ups_next_day_air"),
        ({"rate": "cheapest", "carriers": ["fedex"]}, "fedex_2_day"),
        ({"rate": "fastest", "carriers": ["usps"]}, "usps_priority"),
    ],
)
async def test_rate_policy_picks_the_label(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    ops_headers: dict[str, str],
    policy: dict[str, Any],
    servicelevel: str,
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await merchant_with_products(http, api, ops_headers, shipping_policy=policy)
    order_id = (await place(http, api, merchant)).json()["order_id"]
    await labelled(http, api, merchant, order_id)
    labels = labels_for(await sandbox_ledger(http, sandbox), order_id)
    assert [label["servicelevel"] for label in labels] == [servicelevel]


async def test_polling_fallback_delivers_when_webhooks_are_lost(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await merchant_with_products(http, api, ops_headers)
    await http.post(f"{sandbox}/_sandbox/shippo/drop_webhooks", json={"enabled": True})
    try:
        order_id = (await place(http, api, merchant)).json()["order_id"]
        order = await labelled(http, api, merchant, order_id)
        tracking_number = order["shipment"]["tracking_number"]
        await advance(http, sandbox, 7 * DAY)
        order = await order_when(http, api, merchant, order_id, {"delivered"}, timeout=120)
    finally:
        await http.post(f"{sandbox}/_sandbox/shippo/drop_webhooks", json={"enabled": False})
    sent = (await http.get(f"{sandbox}/_sandbox/shippo/webhooks")).json()
    mine = [w for w in sent if w["tracking_number"] == tracking_number]
    assert mine
    assert all(w["dropped"] for w in mine)


async def test_cancel_after_label_voids_it(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await merchant_with_products(http, api, ops_headers)
    order_id = (await place(http, api, merchant)).json()["order_id"]
    order = await labelled(http, api, merchant, order_id)
    response = await http.post(
        f"{api}/api/v1/orders/{order_id}/cancel", headers=merchant["headers"]
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    ledger = await sandbox_ledger(http, sandbox)
    label = labels_for(ledger, order_id)[0]
    assert [r["transaction"] for r in ledger["label_refunds"] if r["transaction"] == label["id"]]
    refunds = [
        r for r in ledger["refunds"] if (r.get("metadata") or {}).get("order_id") == order_id
    ]
    assert len(refunds) == 1
    final = (await http.get(f"{api}/api/v1/orders/{order_id}", headers=merchant["headers"])).json()
    assert final["shipment"]["status"] == "voided"
    assert order["shipment"]["tracking_number"] == final["shipment"]["tracking_number"]


async def test_cancel_after_shipping_is_a_conflict(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await merchant_with_products(http, api, ops_headers)
    order_id = (await place(http, api, merchant)).json()["order_id"]
    await labelled(http, api, merchant, order_id)
    await advance(http, sandbox, 2 * HOUR)
    await order_when(http, api, merchant, order_id, {"shipped"})
    response = await http.post(
        f"{api}/api/v1/orders/{order_id}/cancel", headers=merchant["headers"]
    )
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    ledger = await sandbox_ledger(http, sandbox)
    assert not [
        r for r in ledger["refunds"] if (r.get("metadata") or {}).get("order_id") == order_id
    ]


async def test_returned_parcel_is_recorded_for_ops(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await merchant_with_products(http, api, ops_headers)
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "items": [{"sku": "MUG-1", "quantity": 1}],
        "shipping_address": {**ADDRESS, "street1": "1 RETURN TO SENDER St"},
        "payment_method": "pm_card_visa",
    }
    response = await http.post(
        f"{api}/api/v1/orders",
        json=body,
        headers={**merchant["headers"], "Idempotency-Key": uuid.uuid4().hex},
    )
    order_id = response.json()["order_id"]
    await labelled(http, api, merchant, order_id)
    await advance(http, sandbox, 7 * DAY)

    async def returned() -> dict[str, Any] | None:
        order = (
            await http.get(f"{api}/api/v1/orders/{order_id}", headers=merchant["headers"])
        ).json()
        return order if (order.get("shipment") or {}).get("status") == "returned" else None

    order = await eventually(returned, timeout=90)
    assert "shipment.returned" in [e["type"] for e in order["events"]]
