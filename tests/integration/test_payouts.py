"""Escrowed payouts end to end on the dev server: checkouts charged, held 5 s, released by the
2-second payout-release schedule with one transfer each, disputes from Stripe's webhooks,
a restricted seller, and a reconciliation with zero differences."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from fulfil.money import split_fee
from fulfil.settings import Settings
from tests.integration.support import create_merchant, eventually
from tests.integration.test_order_placement import SHIP_FROM, order_when, place, sandbox_ledger

pytestmark = pytest.mark.integration


async def seller(http: httpx.AsyncClient, api: str, ops: dict[str, str]) -> dict[str, Any]:
    merchant = await create_merchant(http, api, ops, ship_from=SHIP_FROM)
    r = await http.post(f"{api}/api/seller/create-account", headers=merchant["headers"])
    assert r.status_code == 201, r.text
    merchant["stripe_account"] = r.json()["stripe_account"]
    again = await http.post(f"{api}/api/seller/create-account", headers=merchant["headers"])
    assert again.json()["stripe_account"] == merchant["stripe_account"]
    return merchant


async def checkout(
    http: httpx.AsyncClient, api: str, merchant: dict[str, Any], amount: int, **extra: Any
) -> httpx.Response:
    body = {
        "listing": "Hand-poured soy candle",
        "amount": amount,
        "currency": "USD",
        "buyer_email": "buyer@example.com",
        "payment_method": "pm_card_visa",
        **extra,
    }
    headers = {**merchant["headers"], "Idempotency-Key": uuid.uuid4().hex}
    return await http.post(f"{api}/api/checkout/create-session", json=body, headers=headers)


async def payout(
    http: httpx.AsyncClient, api: str, headers: dict[str, str], payout_id: str
) -> dict[str, Any]:
    r = await http.get(f"{api}/api/v1/payouts/{payout_id}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def payout_when(
    http: httpx.AsyncClient,
    api: str,
    headers: dict[str, str],
    payout_id: str,
    status: str,
    timeout: float = 60,
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = await payout(http, api, headers, payout_id)
        return found if found["status"] == status else None

    result: dict[str, Any] = await eventually(check, timeout=timeout, interval=0.25)
    return result


def transfers_for(ledger: dict[str, Any], payout_id: str) -> list[dict[str, Any]]:
    return [
        t for t in ledger["transfers"] if (t.get("metadata") or {}).get("payout_id") == payout_id
    ]


# Its own deadlines add up to more than the suite's 180 s hang guard.
@pytest.mark.timeout(300)
async def test_a_hundred_checkouts_are_released_once_and_reconcile(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    ops_headers: dict[str, str],
    stack_settings: Settings,
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await seller(http, api, ops_headers)
    amounts = [1000 + 37 * i for i in range(100)]
    created: list[dict[str, Any]] = []
    for batch in range(0, 100, 10):
        answers = await asyncio.gather(
            *(checkout(http, api, merchant, amount) for amount in amounts[batch : batch + 10])
        )
        for response in answers:
            assert response.status_code == 201, response.text
            created.append(response.json())
    assert all(c["payment_intent_id"] for c in created)
    first = await payout(http, api, merchant["headers"], created[0]["payout_id"])
    assert first["status"] in ("holding", "releasable", "released")
    fee, share = split_fee(amounts[0], 1500)
    assert (first["platform_fee"], first["seller_amount"]) == (fee, share)

    async def all_released() -> bool:
        r = await http.get(
            f"{api}/api/v1/payouts",
            params={"status": "released", "limit": 100},
            headers=merchant["headers"],
        )
        return len(r.json()["data"]) == 100

    await eventually(all_released, timeout=120, interval=1)
    ledger = await sandbox_ledger(http, sandbox)
    for made, amount in zip(created, amounts, strict=True):
        [transfer] = transfers_for(ledger, made["payout_id"])
        assert transfer["amount"] == split_fee(amount, 1500)[1]
        assert transfer["destination"] == merchant["stripe_account"]
        assert transfer["idempotency_key"] == f"payout:{made['payout_id']}:transfer"
    r = await http.get(f"{api}/api/v1/ops/reconciliation", headers=ops_headers)
    assert r.status_code == 200, r.text
    assert r.json()["differences"] == []
    assert r.json()["balanced"] is True


async def shipping_order(
    http: httpx.AsyncClient, api: str, merchant: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A Connect seller's storefront order of a mug, once it ships, and its payout's id."""
    r = await http.post(
        f"{api}/api/v1/products",
        json={"sku": "MUG-1", "name": "Mug", "price": 1800, "currency": "USD", "stock": 5},
        headers=merchant["headers"],
    )
    assert r.status_code == 201
    order_id = (await place(http, api, merchant)).json()["order_id"]
    order = await order_when(http, api, merchant, order_id, {"fulfilling", "shipped"})

    async def has_payout() -> str | None:
        found = (
            await http.get(f"{api}/api/v1/orders/{order_id}", headers=merchant["headers"])
        ).json()
        return found["payout_id"]

    return order, await eventually(has_payout)


async def test_a_connect_merchants_order_is_paid_out(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await seller(http, api, ops_headers)
    order, payout_id = await shipping_order(http, api, merchant)
    order_id = order["order_id"]
    released = await payout_when(http, api, merchant["headers"], payout_id, "released")
    assert released["amount"] == order["totals"]["total"]
    assert released["order_id"] == order_id
    [transfer] = transfers_for(await sandbox_ledger(http, sandbox), payout_id)
    assert transfer["amount"] == released["seller_amount"]


async def test_an_order_refunded_through_its_payout_is_announced(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    """Ops refund a disputed Connect order: the order ends ``refunded``, and the merchant's
    webhook and the customer's email say so, as for any status change."""
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await seller(http, api, ops_headers)
    hook = f"refund-{uuid.uuid4().hex[:8]}"
    r = await http.patch(
        f"{api}/api/v1/merchants/me",
        json={"webhook_url": f"{sandbox}/_sandbox/hooks/{hook}"},
        headers=merchant["headers"],
    )
    assert r.status_code == 200, r.text
    order, paying = await shipping_order(http, api, merchant)
    order_id = order["order_id"]
    r = await http.post(
        f"{api}/api/v1/payouts/{paying}/dispute",
        json={"reason": "arrived broken"},
        headers=merchant["headers"],
    )
    assert r.status_code == 200, r.text
    r = await http.post(
        f"{api}/api/v1/payouts/{paying}/resolve", json={"outcome": "refund"}, headers=ops_headers
    )
    assert r.status_code == 200, r.text
    await payout_when(http, api, merchant["headers"], paying, "refunded")
    await order_when(http, api, merchant, order_id, {"refunded"})

    async def announced() -> bool:
        got = (await http.get(f"{sandbox}/_sandbox/hooks/{hook}")).json()
        types = {httpx.Response(200, content=h["body"]).json()["type"] for h in got}
        emails = (await sandbox_ledger(http, sandbox))["emails"]
        emailed = [e for e in emails if order_id in str(e) and "refunded" in str(e)]
        return "order.refunded" in types and len(emailed) == 1

    await eventually(announced)


async def test_a_stripe_dispute_after_release_reverses_and_a_lost_one_refunds(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await seller(http, api, ops_headers)
    made = (await checkout(http, api, merchant, 5000)).json()
    released = await payout_when(http, api, merchant["headers"], made["payout_id"], "released")
    r = await http.post(
        f"{sandbox}/_sandbox/stripe/charges/{made['payment_intent_id']}/dispute",
        json={"reason": "fraudulent"},
    )
    assert r.status_code == 201, r.text
    dispute_id = r.json()["dispute_id"]
    disputed = await payout_when(http, api, merchant["headers"], made["payout_id"], "disputed")
    assert disputed["dispute_id"] == dispute_id
    [transfer] = transfers_for(await sandbox_ledger(http, sandbox), made["payout_id"])
    assert transfer["status"] == "reversed"
    assert transfer["id"] == released["transfer_id"]

    r = await http.post(
        f"{sandbox}/_sandbox/stripe/disputes/{dispute_id}/close", json={"status": "lost"}
    )
    assert r.status_code == 200, r.text
    await payout_when(http, api, merchant["headers"], made["payout_id"], "refunded")
    report = (await http.get(f"{api}/api/v1/ops/reconciliation", headers=ops_headers)).json()
    assert [d for d in report["differences"] if d["subject"] == made["payout_id"]] == []


async def test_a_dispute_before_release_freezes_until_ops_decide(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    merchant = await seller(http, api, ops_headers)
    made = (await checkout(http, api, merchant, 4000)).json()
    r = await http.post(
        f"{api}/api/v1/payouts/{made['payout_id']}/dispute",
        json={"reason": "buyer says it never arrived"},
        headers=merchant["headers"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "disputed"
    # Well past the hold and several schedule runs: nothing moves while disputed.
    await asyncio.sleep(8)
    assert transfers_for(await sandbox_ledger(http, sandbox), made["payout_id"]) == []
    r = await http.post(
        f"{api}/api/v1/payouts/{made['payout_id']}/resolve",
        json={"outcome": "release"},
        headers=merchant["headers"],
    )
    assert r.status_code == 403  # ops only
    r = await http.post(
        f"{api}/api/v1/payouts/{made['payout_id']}/resolve",
        json={"outcome": "release"},
        headers=ops_headers,
    )
    assert r.status_code == 200, r.text
    await payout_when(http, api, merchant["headers"], made["payout_id"], "released")
    assert len(transfers_for(await sandbox_ledger(http, sandbox), made["payout_id"])) == 1
    r = await http.post(
        f"{api}/api/v1/payouts/{made['payout_id']}/resolve",
        json={"outcome": "refund"},
        headers=ops_headers,
    )
    assert r.status_code == 409  # not disputed any more


async def test_a_restricted_seller_waits_without_holding_up_others(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    stuck, fine = await seller(http, api, ops_headers), await seller(http, api, ops_headers)
    r = await http.post(
        f"{sandbox}/_sandbox/stripe/accounts/{stuck['stripe_account']}/restrict",
        json={"restricted": True},
    )
    assert r.status_code == 200, r.text
    blocked = (await checkout(http, api, stuck, 3000)).json()
    other = (await checkout(http, api, fine, 3000)).json()
    await payout_when(http, api, fine["headers"], other["payout_id"], "released")

    async def refused() -> dict[str, Any] | None:
        found = await payout(http, api, stuck["headers"], blocked["payout_id"])
        return found if found["transfer_error"] else None

    visible = await eventually(refused, timeout=60)
    assert visible["status"] == "releasable"
    assert "capabilities" in visible["transfer_error"]
    await http.post(
        f"{sandbox}/_sandbox/stripe/accounts/{stuck['stripe_account']}/restrict",
        json={"restricted": False},
    )
    released = await payout_when(
        http, api, stuck["headers"], blocked["payout_id"], "released", timeout=120
    )
    assert released["transfer_error"] is None


async def test_checkout_needs_a_seller_account(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    api = engine["api"]
    merchant = await create_merchant(http, api, ops_headers)
    r = await checkout(http, api, merchant, 1000)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
