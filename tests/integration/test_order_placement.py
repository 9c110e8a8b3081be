"""Storefront orders end to end: API → PostgreSQL/outbox → Temporal → worker → sandbox."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from devstack.harness import in_process
from fulfil.settings import Settings
from fulfil.signatures import verify_merchant_webhook
from fulfil.temporal import MERCHANT_ID, ORDER_ID, ORDER_STATUS
from tests.integration.support import create_merchant, eventually

pytestmark = pytest.mark.integration

# Once paid, an order moves on to fulfilment at once.
PAID = {"paid", "fulfilling", "shipped", "delivered"}

SHIP_FROM = {
    "name": "Candle Works",
    "street1": "5 Wharf Rd",
    "city": "Melbourne",
    "state": "VIC",
    "zip": "3000",
    "country": "AU",
}
ADDRESS = {
    "name": "Ada",
    "street1": "1 Main St",
    "city": "Sydney",
    "state": "NSW",
    "zip": "2000",
    "country": "AU",
}


@pytest.fixture
async def shop(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> dict[str, Any]:
    hook = f"shop-{uuid.uuid4().hex[:8]}"
    merchant = await create_merchant(
        http,
        engine["api"],
        ops_headers,
        webhook_url=f"{engine['sandbox']}/_sandbox/hooks/{hook}",
        ship_from=SHIP_FROM,
    )
    merchant["hook"] = hook
    for sku, price, stock in (("MUG-1", 1800, 100), ("TEE-1", 2500, 10)):
        response = await http.post(
            f"{engine['api']}/api/v1/products",
            json={"sku": sku, "name": sku, "price": price, "currency": "USD", "stock": stock},
            headers=merchant["headers"],
        )
        assert response.status_code == 201, response.text
    response = await http.post(
        f"{engine['api']}/api/v1/discounts",
        json={"code": "WELCOME10", "percent_off": 10},
        headers=merchant["headers"],
    )
    assert response.status_code == 201, response.text
    return merchant


async def place(
    http: httpx.AsyncClient,
    api: str,
    merchant: dict[str, Any],
    *,
    payment_method: str = "pm_card_visa",
    items: list[dict[str, Any]] | None = None,
    key: str | None = None,
    discount_code: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "items": items or [{"sku": "MUG-1", "quantity": 2}],
        "shipping_address": ADDRESS,
        "payment_method": payment_method,
    }
    if discount_code:
        body["discount_code"] = discount_code
    return await http.post(
        f"{api}/api/v1/orders",
        json=body,
        headers={**merchant["headers"], "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def order_when(
    http: httpx.AsyncClient,
    api: str,
    merchant: dict[str, Any],
    order_id: str,
    statuses: set[str],
    timeout: float = 60,
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await http.get(f"{api}/api/v1/orders/{order_id}", headers=merchant["headers"])
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order if order["status"] in statuses else None

    result: dict[str, Any] = await eventually(check, timeout=timeout)
    return result


async def sandbox_ledger(http: httpx.AsyncClient, sandbox: str) -> dict[str, Any]:
    response = await http.get(f"{sandbox}/_sandbox/ledger")
    assert response.status_code == 200
    ledger: dict[str, Any] = response.json()
    return ledger


def intents_for(ledger: dict[str, Any], order_id: str) -> list[dict[str, Any]]:
    return [
        pi
        for pi in ledger["payment_intents"]
        if (pi.get("metadata") or {}).get("order_id") == order_id
    ]


async def test_order_is_paid_and_everyone_is_told(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    shop: dict[str, Any],
    temporal: WorkflowEnvironment,
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    response = await place(http, api, shop, discount_code="WELCOME10")
    assert response.status_code == 202, response.text
    placed = response.json()
    assert placed["links"]["self"] == f"/api/v1/orders/{placed['order_id']}"
    order_id = placed["order_id"]

    order = await order_when(http, api, shop, order_id, PAID)
    assert order["totals"] == {
        "subtotal": 3600,
        "discount": 360,
        "shipping": 500,
        "total": 3740,
        "currency": "USD",
    }
    assert order["source"] == "storefront"
    assert order["payment"]["status"] == "succeeded"
    assert [e["type"] for e in order["events"]][:3] == [
        "order.created",
        "payment.started",
        "payment.succeeded",
    ]

    ledger = await sandbox_ledger(http, sandbox)
    intents = intents_for(ledger, order_id)
    assert [pi["status"] for pi in intents] == ["succeeded"]
    assert intents[0]["amount"] == 3740
    assert intents[0]["id"] == order["payment"]["payment_intent_id"]

    product = (await http.get(f"{api}/api/v1/products/MUG-1", headers=shop["headers"])).json()
    assert (product["stock"], product["reserved"]) == (98, 0)

    # Customer email and signed merchant webhooks for each status change.
    async def confirmed_email() -> list[dict[str, Any]]:
        emails = (await sandbox_ledger(http, sandbox))["emails"]
        return [e for e in emails if order_id in str(e) and "confirmed" in str(e)]

    await eventually(confirmed_email)

    async def hooks() -> list[dict[str, Any]] | None:
        got = (await http.get(f"{sandbox}/_sandbox/hooks/{shop['hook']}")).json()
        types = {(httpx.Response(200, content=h["body"]).json())["type"] for h in got}
        return got if {"order.awaiting_payment", "order.paid"} <= types else None

    delivered = await eventually(hooks)
    for hook in delivered:
        header = {k.lower(): v for k, v in hook["headers"].items()}["fulfil-signature"]
        assert verify_merchant_webhook(shop["webhook_secret"], hook["body"].encode(), header)

    # Ops see the run in Temporal with its search attributes.
    client: Client = temporal.client
    description = await client.get_workflow_handle(f"order-{order_id}").describe()
    attrs = description.typed_search_attributes
    assert attrs.get(ORDER_ID) == order_id
    assert attrs.get(MERCHANT_ID) == shop["merchant_id"]
    assert attrs.get(ORDER_STATUS) in PAID


async def test_declined_card_fails_and_releases_stock(
    engine: dict[str, str], http: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    response = await place(http, api, shop, payment_method="pm_card_chargeDeclined")
    assert response.status_code == 202, response.text
    order_id = response.json()["order_id"]

    order = await order_when(http, api, shop, order_id, {"failed"})
    assert order["events"][-1]["type"] == "order.failed"
    assert "payment_declined" in order["events"][-1]["detail"]
    product = (await http.get(f"{api}/api/v1/products/MUG-1", headers=shop["headers"])).json()
    assert (product["stock"], product["reserved"]) == (100, 0)
    ledger = await sandbox_ledger(http, sandbox)
    assert all(pi["status"] != "succeeded" for pi in intents_for(ledger, order_id))

    async def failure_email() -> list[dict[str, Any]]:
        emails = (await sandbox_ledger(http, sandbox))["emails"]
        return [e for e in emails if order_id in str(e) and "declined" in str(e)]

    await eventually(failure_email)


async def test_authentication_required_completes_through_the_stripe_webhook(
    engine: dict[str, str], http: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    response = await place(http, api, shop, payment_method="pm_card_authenticationRequired")
    order_id = response.json()["order_id"]

    async def requires_action() -> str | None:
        order = (await http.get(f"{api}/api/v1/orders/{order_id}", headers=shop["headers"])).json()
        payment = order["payment"]
        if payment and payment["status"] == "requires_action":
            return str(payment["payment_intent_id"])
        return None

    intent_id = await eventually(requires_action)
    response = await http.post(
        f"{sandbox}/_sandbox/stripe/payment_intents/{intent_id}/authenticate"
    )
    assert response.status_code == 200, response.text
    order = await order_when(http, api, shop, order_id, PAID)
    assert order["payment"]["status"] == "succeeded"
    assert len(intents_for(await sandbox_ledger(http, sandbox), order_id)) == 1


async def test_same_idempotency_key_is_one_order_and_one_charge(
    engine: dict[str, str], http: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    key = uuid.uuid4().hex
    first, second = await asyncio.gather(
        place(http, api, shop, key=key), place(http, api, shop, key=key)
    )
    assert first.status_code == second.status_code == 202
    assert first.json()["order_id"] == second.json()["order_id"]
    order_id = first.json()["order_id"]
    await order_when(http, api, shop, order_id, PAID)
    third = await place(http, api, shop, key=key)
    assert third.json()["order_id"] == order_id
    listed = (await http.get(f"{api}/api/v1/orders?limit=100", headers=shop["headers"])).json()
    assert [o["order_id"] for o in listed["data"]].count(order_id) == 1
    assert len(intents_for(await sandbox_ledger(http, sandbox), order_id)) == 1


async def test_another_merchants_order_is_not_found(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    shop: dict[str, Any],
    ops_headers: dict[str, str],
) -> None:
    api = engine["api"]
    order_id = (await place(http, api, shop)).json()["order_id"]
    other = await create_merchant(http, api, ops_headers)
    response = await http.get(f"{api}/api/v1/orders/{order_id}", headers=other["headers"])
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    cancel = await http.post(f"{api}/api/v1/orders/{order_id}/cancel", headers=other["headers"])
    assert cancel.status_code == 404


async def test_cancel_paid_order_refunds_and_restocks(
    engine: dict[str, str], http: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    order_id = (await place(http, api, shop)).json()["order_id"]
    await order_when(http, api, shop, order_id, PAID)
    response = await http.post(f"{api}/api/v1/orders/{order_id}/cancel", headers=shop["headers"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    product = (await http.get(f"{api}/api/v1/products/MUG-1", headers=shop["headers"])).json()
    assert (product["stock"], product["reserved"]) == (100, 0)
    refunds = [
        r
        for r in (await sandbox_ledger(http, sandbox))["refunds"]
        if (r.get("metadata") or {}).get("order_id") == order_id
    ]
    assert len(refunds) == 1
    assert refunds[0]["amount"] == 4100


async def test_cancel_failed_order_is_a_conflict(
    engine: dict[str, str], http: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    api = engine["api"]
    response = await place(http, api, shop, payment_method="pm_card_chargeDeclined")
    order_id = response.json()["order_id"]
    await order_when(http, api, shop, order_id, {"failed"})
    response = await http.post(f"{api}/api/v1/orders/{order_id}/cancel", headers=shop["headers"])
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


# Its own deadlines add up to more than the suite's 180 s hang guard.
@pytest.mark.timeout(300)
async def test_fifty_orders_for_the_last_ten_units(
    engine: dict[str, str], http: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    """No oversell: exactly ten paid; the rest rejected with 409 or failed out_of_stock."""
    api, sandbox = engine["api"], engine["sandbox"]
    responses = await asyncio.gather(
        *(place(http, api, shop, items=[{"sku": "TEE-1", "quantity": 1}]) for _ in range(50))
    )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {202, 409}, codes
    accepted = [r.json()["order_id"] for r in responses if r.status_code == 202]
    finals = await asyncio.gather(
        *(order_when(http, api, shop, o, PAID | {"failed"}, timeout=120) for o in accepted)
    )
    paid = [o for o in finals if o["status"] in PAID]
    assert len(paid) == 10
    assert all(
        o["events"][-1]["detail"] == "out_of_stock" for o in finals if o["status"] == "failed"
    )
    assert codes.count(409) + len(finals) - len(paid) == 40
    product = (await http.get(f"{api}/api/v1/products/TEE-1", headers=shop["headers"])).json()
    assert (product["stock"], product["reserved"]) == (0, 0)
    ledger = await sandbox_ledger(http, sandbox)
    charged = [pi for o in accepted for pi in intents_for(ledger, o) if pi["status"] == "succeeded"]
    assert len(charged) == 10


async def test_order_accepted_while_temporal_is_unreachable_is_not_lost(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    shop: dict[str, Any],
    stack_settings: Settings,
) -> None:
    """An API that cannot reach Temporal still answers 202; the worker's relay starts the run."""
    cut_off = stack_settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    app = create_app(cut_off)
    async with in_process(app) as local:
        response = await place(local, "http://api", shop)
        assert response.status_code == 202, response.text
    order_id = response.json()["order_id"]
    order = await order_when(http, engine["api"], shop, order_id, PAID, timeout=60)
    assert order["payment"]["status"] == "succeeded"
