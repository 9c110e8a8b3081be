"""The sandbox's Stripe Connect: accounts, transfers, reversals and disputes, through the SDK.

What the escrowed-payout workflow relies on: a transfer per payout that is
idempotent under its key, refused for a restricted seller or beyond its source
charge; reversals; disputes opened and closed by the card network (control
endpoints) with their signed webhooks, re-readable through the API; and a
ledger a test can count by payout.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import stripe

from tests.sandbox.conftest import ENGINE_HOOK, WEBHOOK_SECRET, eventually

ORDER: dict[str, Any] = {
    "amount": 2500,
    "currency": "usd",
    "payment_method": "pm_card_visa",
    "payment_method_types": ["card"],
    "confirm": True,
    "metadata": {"order_id": "o-1"},
}
RESTRICTED_MESSAGE = (
    "Your destination account needs to have at least one of the following capabilities "
    "enabled: transfers, crypto_transfers, legacy_payments"
)


async def ledger(http: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    response = await http.get("/_sandbox/ledger")
    response.raise_for_status()
    body: dict[str, list[dict[str, Any]]] = response.json()
    return body


async def stripe_events(http: httpx.AsyncClient, event_type: str) -> list[stripe.Event]:
    """Events delivered to the engine stand-in, each verified as the engine does."""
    response = await http.get(f"/_sandbox/hooks/{ENGINE_HOOK}")
    response.raise_for_status()
    events = []
    for call in response.json():
        event = stripe.Webhook.construct_event(
            call["body"], call["headers"]["stripe-signature"], WEBHOOK_SECRET
        )
        if event.type == event_type:
            events.append(event)
    return events


async def seller(client: stripe.StripeClient, merchant_id: str = "m-1") -> stripe.Account:
    return await client.v1.accounts.create_async(
        {
            "type": "express",
            "country": "US",
            "email": f"{merchant_id}@sellers.example",
            "capabilities": {
                "card_payments": {"requested": True},
                "transfers": {"requested": True},
            },
            "metadata": {"merchant_id": merchant_id},
        }
    )


async def paid_charge(client: stripe.StripeClient, group: str = "payout-p-1") -> str:
    intent = await client.v1.payment_intents.create_async({**ORDER, "transfer_group": group})
    assert isinstance(intent.latest_charge, str)
    return intent.latest_charge


async def open_dispute(http: httpx.AsyncClient, charge: str, **body: Any) -> dict[str, Any]:
    response = await http.post(f"/_sandbox/stripe/charges/{charge}/dispute", json=body)
    assert response.status_code == 201, response.text
    dispute: dict[str, Any] = response.json()
    return dispute


def payout_transfer(destination: str, payout_id: str, amount: int = 2125) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "usd",
        "destination": destination,
        "transfer_group": f"payout-{payout_id}",
        "metadata": {"payout_id": payout_id},
    }


# ------------------------------------------------------------------ accounts


async def test_account_is_created_retrieved_and_listed(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await stripe_client.v1.accounts.create_async(
        {
            "type": "custom",
            "country": "gb",
            "email": "ada@sellers.example",
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"merchant_id": "m-1"},
        },
        {"idempotency_key": "merchant:m-1:account"},
    )
    assert account.object == "account"
    assert account.id.startswith("acct_")
    assert account.type == "custom"
    assert account.country == "GB"
    assert account.capabilities is not None
    assert account.capabilities.to_dict() == {"transfers": "active"}
    assert account.payouts_enabled is True
    assert account.charges_enabled is False  # no card_payments asked for
    assert account.metadata["merchant_id"] == "m-1"

    fetched = await stripe_client.v1.accounts.retrieve_async(account.id)
    assert fetched.email == "ada@sellers.example"
    other = await seller(stripe_client, "m-2")
    listed = await stripe_client.v1.accounts.list_async({"limit": 1})
    assert [a.id for a in listed.data] == [other.id]  # newest first
    assert listed.has_more is True
    everyone = [a.id async for a in listed.auto_paging_iter()]
    assert everyone == [other.id, account.id]

    [entry, _] = (await ledger(control_http))["accounts"]
    assert entry["id"] == account.id
    assert entry["status"] == "active"
    assert entry["idempotency_key"] == "merchant:m-1:account"
    assert entry["metadata"] == {"merchant_id": "m-1"}
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await stripe_client.v1.accounts.retrieve_async("acct_missing")
    assert missing.value.http_status == 404


async def test_account_creation_is_idempotent(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    params = {"type": "express", "email": "m-1@sellers.example"}
    first = await stripe_client.v1.accounts.create_async(params, {"idempotency_key": "acct:m-1"})
    again = await stripe_client.v1.accounts.create_async(params, {"idempotency_key": "acct:m-1"})
    assert again.id == first.id
    assert again.last_response.headers.get("idempotent-replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        await stripe_client.v1.accounts.create_async(
            {**params, "email": "other@sellers.example"}, {"idempotency_key": "acct:m-1"}
        )
    assert len((await ledger(control_http))["accounts"]) == 1


async def test_restricted_account_refuses_transfers_until_lifted(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await seller(stripe_client)
    restricted = await control_http.post(
        f"/_sandbox/stripe/accounts/{account.id}/restrict", json={"restricted": True}
    )
    assert restricted.status_code == 200
    assert restricted.json()["capabilities"]["transfers"] == "inactive"

    fetched = await stripe_client.v1.accounts.retrieve_async(account.id)
    assert fetched.charges_enabled is False
    assert fetched.payouts_enabled is False
    assert fetched.capabilities is not None
    assert fetched.capabilities.transfers == "inactive"
    assert fetched.requirements is not None
    assert fetched.requirements.disabled_reason == "requirements.past_due"
    key = {"idempotency_key": "payout:p-1:transfer"}
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await stripe_client.v1.transfers.create_async(payout_transfer(account.id, "p-1"), key)
    assert refused.value.http_status == 400
    assert refused.value.code == "insufficient_capabilities_for_transfer"
    assert refused.value.param == "destination"
    assert refused.value.user_message == RESTRICTED_MESSAGE
    assert refused.value.json_body is not None
    assert refused.value.json_body["error"]["type"] == "invalid_request_error"
    book = await ledger(control_http)
    assert book["transfers"] == []
    assert book["accounts"][0]["status"] == "restricted"

    lifted = await control_http.post(
        f"/_sandbox/stripe/accounts/{account.id}/restrict", json={"restricted": False}
    )
    assert lifted.json()["payouts_enabled"] is True
    # The refusal saved nothing under the key: the retry under it now goes through.
    transfer = await stripe_client.v1.transfers.create_async(
        payout_transfer(account.id, "p-1"), key
    )
    assert transfer.destination == account.id
    assert transfer.last_response.headers.get("idempotent-replayed") is None
    assert (await stripe_client.v1.accounts.retrieve_async(account.id)).charges_enabled is True
    book = await ledger(control_http)
    assert book["accounts"][0]["status"] == "active"
    assert [t["idempotency_key"] for t in book["transfers"]] == ["payout:p-1:transfer"]


async def test_account_without_the_transfers_capability_cannot_receive_transfers(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await stripe_client.v1.accounts.create_async(
        {"type": "custom", "capabilities": {"card_payments": {"requested": True}}}
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await stripe_client.v1.transfers.create_async(payout_transfer(account.id, "p-1"))
    assert refused.value.code == "insufficient_capabilities_for_transfer"

    unknown = await control_http.post(
        "/_sandbox/stripe/accounts/acct_nobody/restrict", json={"restricted": True}
    )
    assert unknown.status_code == 404


# --------------------------------------------------------- payment intents


async def test_transfer_group_is_on_the_charge_and_intents_are_listed(
    stripe_client: stripe.StripeClient,
) -> None:
    charge_id = await paid_charge(stripe_client, "payout-p-7")
    charge = await stripe_client.v1.charges.retrieve_async(charge_id)
    assert charge.transfer_group == "payout-p-7"

    others = [
        await stripe_client.v1.payment_intents.create_async({**ORDER, "customer": "cus_1"})
        for _ in range(2)
    ]
    page = await stripe_client.v1.payment_intents.list_async({"limit": 2})
    assert [pi.id for pi in page.data] == [others[1].id, others[0].id]
    assert page.has_more is True
    every = [pi async for pi in page.auto_paging_iter()]
    assert len(every) == 3
    assert every[-1].transfer_group == "payout-p-7"
    mine = await stripe_client.v1.payment_intents.list_async({"customer": "cus_1"})
    assert {pi.id for pi in mine.data} == {o.id for o in others}
    expanded = await stripe_client.v1.payment_intents.list_async(
        {"limit": 1, "expand": ["data.latest_charge"]}
    )
    latest = expanded.data[0].latest_charge
    assert isinstance(latest, stripe.Charge)
    assert latest.payment_intent == others[1].id


# ----------------------------------------------------------------- transfers


async def test_transfer_from_a_source_charge(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await seller(stripe_client)
    charge_id = await paid_charge(stripe_client)

    transfer = await stripe_client.v1.transfers.create_async(
        {**payout_transfer(account.id, "p-1"), "source_transaction": charge_id},
        {"idempotency_key": "payout:p-1:transfer"},
    )
    assert transfer.object == "transfer"
    assert transfer.id.startswith("tr_")
    assert transfer.amount == 2125
    assert transfer.currency == "usd"
    assert transfer.destination == account.id
    assert transfer.source_transaction == charge_id
    assert transfer.transfer_group == "payout-p-1"
    assert transfer.metadata["payout_id"] == "p-1"
    assert transfer.reversed is False
    assert transfer.amount_reversed == 0
    assert transfer.reversals.total_count == 0

    fetched = await stripe_client.v1.transfers.retrieve_async(transfer.id)
    assert fetched.to_dict() == transfer.to_dict()
    [entry] = (await ledger(control_http))["transfers"]
    assert entry == {
        "id": transfer.id,
        "status": "paid",
        "amount": 2125,
        "amount_reversed": 0,
        "currency": "usd",
        "destination": account.id,
        "transfer_group": "payout-p-1",
        "source_transaction": charge_id,
        "reversals": [],
        "metadata": {"payout_id": "p-1"},
        "idempotency_key": "payout:p-1:transfer",
        "created": entry["created"],
    }
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await stripe_client.v1.transfers.retrieve_async("tr_missing")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"


async def test_transfer_replayed_under_its_key(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await seller(stripe_client)
    key = {"idempotency_key": "payout:p-1:transfer"}
    first = await stripe_client.v1.transfers.create_async(payout_transfer(account.id, "p-1"), key)
    second = await stripe_client.v1.transfers.create_async(payout_transfer(account.id, "p-1"), key)

    assert second.id == first.id
    assert second.last_response.headers.get("idempotent-replayed") == "true"
    assert second.last_response.headers.get("original-request") == first.last_response.request_id
    assert len((await ledger(control_http))["transfers"]) == 1
    listed = await stripe_client.v1.transfers.list_async()
    assert [t.id for t in listed.data] == [first.id]


async def test_transfer_key_reused_with_another_body_is_an_idempotency_error(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await seller(stripe_client)
    key = {"idempotency_key": "payout:p-1:transfer"}
    await stripe_client.v1.transfers.create_async(payout_transfer(account.id, "p-1"), key)

    with pytest.raises(stripe.IdempotencyError) as raised:
        await stripe_client.v1.transfers.create_async(
            payout_transfer(account.id, "p-1", amount=2000), key
        )
    assert raised.value.http_status == 400
    assert raised.value.json_body is not None
    error = raised.value.json_body["error"]
    assert error["type"] == "idempotency_error"
    assert "payout:p-1:transfer" in error["message"]
    # The same key on another endpoint is refused too.
    with pytest.raises(stripe.IdempotencyError):
        await stripe_client.v1.accounts.create_async({"type": "express"}, key)
    assert len((await ledger(control_http))["transfers"]) == 1


async def test_transfers_from_a_charge_cannot_exceed_it(
    stripe_client: stripe.StripeClient,
) -> None:
    account = await seller(stripe_client)
    charge_id = await paid_charge(stripe_client)  # 2500
    funded = {"destination": account.id, "currency": "usd", "source_transaction": charge_id}

    await stripe_client.v1.transfers.create_async({**funded, "amount": 2000})
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        await stripe_client.v1.transfers.create_async({**funded, "amount": 501})
    assert too_much.value.http_status == 400
    assert too_much.value.code == "balance_insufficient"
    assert too_much.value.param == "amount"
    assert "(500)" in str(too_much.value.user_message)
    rest = await stripe_client.v1.transfers.create_async({**funded, "amount": 500})
    assert rest.amount == 500

    with pytest.raises(stripe.InvalidRequestError) as other_currency:
        await stripe_client.v1.transfers.create_async({**funded, "amount": 1, "currency": "eur"})
    assert other_currency.value.param == "source_transaction"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await stripe_client.v1.transfers.create_async(
            {**funded, "amount": 1, "source_transaction": "ch_missing"}
        )
    assert unknown.value.http_status == 404
    assert unknown.value.param == "source_transaction"
    with pytest.raises(stripe.CardError) as declined:
        await stripe_client.v1.payment_intents.create_async(
            {**ORDER, "payment_method": "pm_card_chargeDeclined"}
        )
    assert declined.value.error is not None
    with pytest.raises(stripe.InvalidRequestError) as failed_charge:
        await stripe_client.v1.transfers.create_async(
            {**funded, "amount": 1, "source_transaction": declined.value.error.charge}
        )
    assert failed_charge.value.param == "source_transaction"


async def test_transfer_list_filters(stripe_client: stripe.StripeClient) -> None:
    alice, bob = await seller(stripe_client, "m-1"), await seller(stripe_client, "m-2")
    to_alice = await stripe_client.v1.transfers.create_async(payout_transfer(alice.id, "p-1"))
    to_bob = await stripe_client.v1.transfers.create_async(payout_transfer(bob.id, "p-2"))
    also_alice = await stripe_client.v1.transfers.create_async(payout_transfer(alice.id, "p-3"))

    by_destination = await stripe_client.v1.transfers.list_async({"destination": alice.id})
    assert [t.id for t in by_destination.data] == [also_alice.id, to_alice.id]
    by_group = await stripe_client.v1.transfers.list_async({"transfer_group": "payout-p-2"})
    assert [t.id for t in by_group.data] == [to_bob.id]
    both = await stripe_client.v1.transfers.list_async(
        {"destination": alice.id, "transfer_group": "payout-p-2"}
    )
    assert both.data == []

    now = int(time.time())
    recent = await stripe_client.v1.transfers.list_async({"created": {"gte": now - 60}})
    assert len(recent.data) == 3
    future = await stripe_client.v1.transfers.list_async({"created": {"gt": now + 60}})
    assert future.data == []
    exact = await stripe_client.v1.transfers.list_async({"created": to_bob.created})
    assert to_bob.id in {t.id for t in exact.data}
    unknown: dict[str, Any] = {"status": "paid"}
    with pytest.raises(stripe.InvalidRequestError) as unknown_filter:
        await stripe_client.v1.transfers.list_async(unknown)
    assert unknown_filter.value.code == "parameter_unknown"


async def test_transfer_list_pages_like_stripe(stripe_client: stripe.StripeClient) -> None:
    account = await seller(stripe_client)
    made = [
        (await stripe_client.v1.transfers.create_async(payout_transfer(account.id, f"p-{i}"))).id
        for i in range(23)
    ]
    newest_first = list(reversed(made))

    page = await stripe_client.v1.transfers.list_async({"limit": 10})
    assert [t.id for t in page.data] == newest_first[:10]
    assert page.has_more is True
    assert page.url == "/v1/transfers"
    walked = [t.id async for t in page.auto_paging_iter()]
    assert walked == newest_first

    after = await stripe_client.v1.transfers.list_async(
        {"limit": 10, "starting_after": newest_first[19]}
    )
    assert [t.id for t in after.data] == newest_first[20:]
    assert after.has_more is False
    before = await stripe_client.v1.transfers.list_async(
        {"limit": 5, "ending_before": newest_first[10]}
    )
    assert [t.id for t in before.data] == newest_first[5:10]
    assert before.has_more is True
    grouped = await stripe_client.v1.transfers.list_async(
        {"transfer_group": "payout-p-4", "limit": 1}
    )
    assert [t.id for t in grouped.data] == [made[4]]
    assert grouped.has_more is False
    with pytest.raises(stripe.InvalidRequestError) as bad_cursor:
        await stripe_client.v1.transfers.list_async({"starting_after": "tr_missing"})
    assert bad_cursor.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError):
        await stripe_client.v1.transfers.list_async({"limit": 101})


# ----------------------------------------------------------------- reversals


async def test_reversals_partial_then_the_rest(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await seller(stripe_client)
    transfer = await stripe_client.v1.transfers.create_async(
        payout_transfer(account.id, "p-1"), {"idempotency_key": "payout:p-1:transfer"}
    )

    key = {"idempotency_key": "payout:p-1:reversal:1"}
    params = {"amount": 125, "metadata": {"payout_id": "p-1"}}
    partial = await stripe_client.v1.transfers.reversals.create_async(transfer.id, params, key)
    replay = await stripe_client.v1.transfers.reversals.create_async(transfer.id, params, key)
    assert replay.id == partial.id
    assert partial.object == "transfer_reversal"
    assert partial.amount == 125
    assert partial.transfer == transfer.id
    assert partial.metadata["payout_id"] == "p-1"
    [entry] = (await ledger(control_http))["transfers"]
    assert entry["status"] == "partially_reversed"
    assert entry["amount_reversed"] == 125

    rest = await stripe_client.v1.transfers.reversals.create_async(transfer.id)
    assert rest.amount == 2000
    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        await stripe_client.v1.transfers.reversals.create_async(transfer.id, {"amount": 1})
    assert nothing_left.value.code == "amount_too_large"

    fetched = await stripe_client.v1.transfers.retrieve_async(transfer.id)
    assert fetched.reversed is True
    assert fetched.amount_reversed == 2125
    assert fetched.reversals.total_count == 2
    assert [r.id for r in fetched.reversals.data] == [rest.id, partial.id]
    listed = await stripe_client.v1.transfers.reversals.list_async(transfer.id, {"limit": 1})
    assert [r.id for r in listed.data] == [rest.id]
    assert [r.id async for r in listed.auto_paging_iter()] == [rest.id, partial.id]
    one = await stripe_client.v1.transfers.reversals.retrieve_async(transfer.id, partial.id)
    assert one.amount == 125

    [entry] = (await ledger(control_http))["transfers"]
    assert entry["status"] == "reversed"
    assert entry["idempotency_key"] == "payout:p-1:transfer"
    [first, second] = entry["reversals"]
    assert (first["id"], first["amount"]) == (partial.id, 125)
    assert first["idempotency_key"] == "payout:p-1:reversal:1"
    assert first["metadata"] == {"payout_id": "p-1"}
    assert (second["id"], second["amount"]) == (rest.id, 2000)
    # Without a key of ours the SDK sends one of its own (a uuid) on every POST.
    assert second["idempotency_key"] != first["idempotency_key"]


async def test_transfer_events_are_delivered_and_retrievable(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await seller(stripe_client)
    transfer = await stripe_client.v1.transfers.create_async(
        payout_transfer(account.id, "p-1"), {"idempotency_key": "payout:p-1:transfer"}
    )
    await stripe_client.v1.transfers.reversals.create_async(transfer.id, {"amount": 100})

    [created] = await eventually(lambda: stripe_events(control_http, "transfer.created"))
    [reversed_] = await eventually(lambda: stripe_events(control_http, "transfer.reversed"))
    assert created.data.object["id"] == transfer.id
    assert created.request is not None
    assert created.request.idempotency_key == "payout:p-1:transfer"
    assert reversed_.data.object["amount_reversed"] == 100
    fetched = await stripe_client.v1.events.retrieve_async(reversed_.id)
    assert fetched.type == "transfer.reversed"
    listed = await stripe_client.v1.events.list_async({"type": "transfer.*"})
    assert [e.type for e in listed.data] == ["transfer.reversed", "transfer.created"]


async def test_refund_of_a_charge_with_a_transfer_leaves_the_transfer(
    stripe_client: stripe.StripeClient,
) -> None:
    account = await seller(stripe_client)
    charge_id = await paid_charge(stripe_client)
    transfer = await stripe_client.v1.transfers.create_async(
        {**payout_transfer(account.id, "p-1"), "source_transaction": charge_id}
    )

    refund = await stripe_client.v1.refunds.create_async({"charge": charge_id})
    assert refund.amount == 2500
    assert refund.transfer_reversal is None
    # Separate charges and transfers: the platform reverses the transfer itself.
    fetched = await stripe_client.v1.transfers.retrieve_async(transfer.id)
    assert fetched.amount_reversed == 0


# ------------------------------------------------------------------ disputes


async def test_dispute_opened_delivers_a_signed_webhook_and_is_retrievable(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(ORDER)
    charge_id = str(intent.latest_charge)
    opened = await open_dispute(control_http, charge_id, reason="product_not_received")
    assert opened["dispute_id"] == opened["id"]

    [event] = await eventually(lambda: stripe_events(control_http, "charge.dispute.created"))
    assert event.data.object["id"] == opened["id"]
    assert event.data.object["status"] == "needs_response"
    dispute = await stripe_client.v1.disputes.retrieve_async(event.data.object["id"])
    assert dispute.object == "dispute"
    assert dispute.status == "needs_response"
    assert dispute.charge == charge_id
    assert dispute.payment_intent == intent.id
    assert dispute.amount == 2500
    assert dispute.currency == "usd"
    assert dispute.reason == "product_not_received"
    assert dispute.created > 0
    assert dispute.is_charge_refundable is False
    assert [b.amount for b in dispute.balance_transactions] == [-2500]
    assert (await stripe_client.v1.events.retrieve_async(event.id)).id == event.id

    by_charge = await stripe_client.v1.disputes.list_async({"charge": charge_id})
    assert [d.id for d in by_charge.data] == [dispute.id]
    by_intent = await stripe_client.v1.disputes.list_async({"payment_intent": intent.id})
    assert [d.id for d in by_intent.data] == [dispute.id]
    assert (await stripe_client.v1.disputes.list_async({"charge": "ch_other"})).data == []
    [entry] = (await ledger(control_http))["disputes"]
    assert entry["status"] == "needs_response"
    assert entry["platform_debit"] == 2500  # withdrawn while open

    twice = await control_http.post(f"/_sandbox/stripe/charges/{charge_id}/dispute")
    assert twice.status_code == 409


async def test_refund_of_a_disputed_charge_is_refused_until_won(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(ORDER)
    dispute = await open_dispute(control_http, str(intent.latest_charge))

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await stripe_client.v1.refunds.create_async({"payment_intent": intent.id})
    assert refused.value.http_status == 400
    assert refused.value.code == "charge_disputed"
    assert refused.value.user_message == (
        f"Charge {intent.latest_charge} has been charged back; cannot issue a refund."
    )
    assert (await ledger(control_http))["refunds"] == []

    won = await control_http.post(
        f"/_sandbox/stripe/disputes/{dispute['id']}/close", json={"status": "won"}
    )
    assert won.status_code == 200
    refund = await stripe_client.v1.refunds.create_async({"payment_intent": intent.id})
    assert refund.status == "succeeded"


async def test_dispute_won_reinstates_the_funds(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(ORDER)
    dispute = await open_dispute(control_http, intent.id)  # a pi_ id means its charge

    closed = await control_http.post(
        f"/_sandbox/stripe/disputes/{dispute['id']}/close", json={"status": "won"}
    )
    assert closed.status_code == 200
    assert closed.json()["status"] == "won"
    [event] = await eventually(lambda: stripe_events(control_http, "charge.dispute.closed"))
    assert event.data.object["id"] == dispute["id"]
    assert event.data.object["status"] == "won"
    fetched = await stripe_client.v1.disputes.retrieve_async(dispute["id"])
    assert fetched.status == "won"
    assert [b.amount for b in fetched.balance_transactions] == [-2500, 2500]
    [entry] = (await ledger(control_http))["disputes"]
    assert entry["status"] == "won"
    assert entry["platform_debit"] == 0
    assert entry["closed"].endswith("Z")

    again = await control_http.post(
        f"/_sandbox/stripe/disputes/{dispute['id']}/close", json={"status": "lost"}
    )
    assert again.status_code == 409
    assert len(await stripe_events(control_http, "charge.dispute.closed")) == 1


async def test_dispute_lost_debits_the_platform(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(ORDER)
    dispute = await open_dispute(control_http, str(intent.latest_charge), amount=1000)

    closed = await control_http.post(
        f"/_sandbox/stripe/disputes/{dispute['id']}/close", json={"status": "lost"}
    )
    assert closed.json()["status"] == "lost"
    [event] = await eventually(lambda: stripe_events(control_http, "charge.dispute.closed"))
    assert event.data.object["status"] == "lost"
    assert event.data.object["amount"] == 1000
    [entry] = (await ledger(control_http))["disputes"]
    assert entry["status"] == "lost"
    assert entry["amount"] == 1000
    assert entry["funds_withdrawn"] == 1000
    assert entry["platform_debit"] == 1000
    assert entry["metadata"] == {"order_id": "o-1"}
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await stripe_client.v1.refunds.create_async({"payment_intent": intent.id})
    assert refused.value.code == "charge_disputed"


async def test_dispute_evidence_submitted_then_closed_through_the_api(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    first = await stripe_client.v1.payment_intents.create_async(ORDER)
    second = await stripe_client.v1.payment_intents.create_async(ORDER)
    contested = await open_dispute(control_http, str(first.latest_charge))
    accepted = await open_dispute(control_http, str(second.latest_charge))

    submitted = await stripe_client.v1.disputes.update_async(
        contested["id"],
        {"evidence": {"shipping_tracking_number": "9400100000000000000000"}, "submit": True},
    )
    assert submitted.status == "under_review"
    assert submitted.evidence.shipping_tracking_number == "9400100000000000000000"
    won = await control_http.post(
        f"/_sandbox/stripe/disputes/{contested['id']}/close", json={"status": "won"}
    )
    assert won.json()["status"] == "won"

    lost = await stripe_client.v1.disputes.close_async(accepted["id"])
    assert lost.status == "lost"
    with pytest.raises(stripe.InvalidRequestError):
        await stripe_client.v1.disputes.close_async(accepted["id"])
    closed = await eventually(
        lambda: _at_least(2, stripe_events(control_http, "charge.dispute.closed"))
    )
    assert {e.data.object["id"]: e.data.object["status"] for e in closed} == {
        contested["id"]: "won",
        accepted["id"]: "lost",
    }
    assert await eventually(lambda: stripe_events(control_http, "charge.dispute.updated"))


async def _at_least(count: int, probe: Any) -> list[stripe.Event] | None:
    events: list[stripe.Event] = await probe
    return events if len(events) >= count else None


async def test_dispute_control_validation(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(ORDER)
    no_charge = await control_http.post("/_sandbox/stripe/charges/ch_missing/dispute")
    assert no_charge.status_code == 404
    bad_reason = await control_http.post(
        f"/_sandbox/stripe/charges/{intent.latest_charge}/dispute", json={"reason": "bored"}
    )
    assert bad_reason.status_code == 422
    no_dispute = await control_http.post(
        "/_sandbox/stripe/disputes/du_missing/close", json={"status": "won"}
    )
    assert no_dispute.status_code == 404
    dispute = await open_dispute(control_http, str(intent.latest_charge))
    bad_status = await control_http.post(
        f"/_sandbox/stripe/disputes/{dispute['id']}/close", json={"status": "maybe"}
    )
    assert bad_status.status_code == 422
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await stripe_client.v1.disputes.retrieve_async("du_missing")
    assert missing.value.http_status == 404


# -------------------------------------------------------------------- ledger


async def test_ledger_counts_transfers_per_payout(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    book = await ledger(control_http)
    assert book["accounts"] == book["disputes"] == book["transfers"] == []

    account = await seller(stripe_client)
    for payout_id in ("p-1", "p-2", "p-1", "p-3", "p-1"):  # retries of p-1 replay
        await stripe_client.v1.transfers.create_async(
            payout_transfer(account.id, payout_id),
            {"idempotency_key": f"payout:{payout_id}:transfer"},
        )
    # A transfer made without the payout's key is visible as a second one for p-2.
    await stripe_client.v1.transfers.create_async(payout_transfer(account.id, "p-2"))

    transfers = (await ledger(control_http))["transfers"]
    per_payout: dict[str, int] = {}
    for entry in transfers:
        per_payout[entry["metadata"]["payout_id"]] = (
            per_payout.get(entry["metadata"]["payout_id"], 0) + 1
        )
    assert per_payout == {"p-1": 1, "p-2": 2, "p-3": 1}
    keys = [entry["idempotency_key"] for entry in transfers]
    assert keys.count("payout:p-1:transfer") == 1
    assert len([k for k in keys if k.startswith("payout:p-2:")]) == 1  # the other is the SDK's
    assert {entry["status"] for entry in transfers} == {"paid"}
