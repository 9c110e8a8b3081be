"""The provider sandbox, driven through the official Stripe SDK and its control API."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import stripe

from sandbox.state import WebhookSender
from sandbox.stripe_api import decode_params
from tests.sandbox.conftest import (
    ENGINE_HOOK,
    WEBHOOK_SECRET,
    Sandbox,
    eventually,
    make_stripe_client,
)

VISA_ORDER: dict[str, Any] = {
    "amount": 2500,
    "currency": "usd",
    "payment_method": "pm_card_visa",
    "payment_method_types": ["card"],
    "confirm": True,
    "description": "Order o-1",
    "metadata": {"order_id": "o-1", "merchant_id": "m-1"},
}


async def ledger(http: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    response = await http.get("/_sandbox/ledger")
    response.raise_for_status()
    body: dict[str, list[dict[str, Any]]] = response.json()
    return body


async def hook_requests(http: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    response = await http.get(f"/_sandbox/hooks/{name}")
    response.raise_for_status()
    body: list[dict[str, Any]] = response.json()
    return body


async def stripe_events(http: httpx.AsyncClient, event_type: str) -> list[stripe.Event]:
    """Events the sandbox delivered to the engine stand-in, verified like the engine does."""
    events = []
    for call in await hook_requests(http, ENGINE_HOOK):
        event = stripe.Webhook.construct_event(
            call["body"], call["headers"]["stripe-signature"], WEBHOOK_SECRET
        )
        if event.type == event_type:
            events.append(event)
    return events


async def add_fault(http: httpx.AsyncClient, **rule: Any) -> str:
    response = await http.post("/_sandbox/faults", json=rule)
    assert response.status_code == 201, response.text
    rule_id: str = response.json()["id"]
    return rule_id


# ----------------------------------------------------------------- payments


async def test_visa_payment_succeeds_and_is_in_the_ledger(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(
        VISA_ORDER, {"idempotency_key": "order:o-1:charge"}
    )

    assert intent.object == "payment_intent"
    assert intent.status == "succeeded"
    assert intent.amount == 2500
    assert intent.amount_received == 2500
    assert isinstance(intent.latest_charge, str)
    assert intent.latest_charge.startswith("ch_")
    assert intent.metadata["order_id"] == "o-1"
    assert intent.payment_method_types == ["card"]
    assert intent.description == "Order o-1"
    [entry] = (await ledger(control_http))["payment_intents"]
    assert entry["id"] == intent.id
    assert entry["status"] == "succeeded"
    assert entry["amount"] == 2500
    assert entry["currency"] == "usd"
    assert entry["metadata"] == {"order_id": "o-1", "merchant_id": "m-1"}
    assert entry["idempotency_key"] == "order:o-1:charge"


async def test_payment_intent_created_then_confirmed(stripe_client: stripe.StripeClient) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(
        {
            "amount": 900,
            "currency": "EUR",
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "transfer_group": "order-o-2",
        }
    )
    assert intent.status == "requires_payment_method"
    assert intent.currency == "eur"
    assert intent.transfer_group == "order-o-2"
    assert intent.automatic_payment_methods is not None
    assert intent.automatic_payment_methods.enabled is True

    confirmed = await stripe_client.v1.payment_intents.confirm_async(
        intent.id, {"payment_method": "pm_card_visa"}
    )
    assert confirmed.id == intent.id
    assert confirmed.status == "succeeded"

    fetched = await stripe_client.v1.payment_intents.retrieve_async(intent.id)
    assert fetched.status == "succeeded"
    assert fetched.latest_charge == confirmed.latest_charge


async def test_declined_card_raises_card_error_and_keeps_the_intent_open(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    with pytest.raises(stripe.CardError) as raised:
        await stripe_client.v1.payment_intents.create_async(
            {**VISA_ORDER, "payment_method": "pm_card_chargeDeclined"},
            {"idempotency_key": "order:o-3:charge"},
        )

    err = raised.value
    assert err.http_status == 402
    assert err.code == "card_declined"
    assert err.error is not None
    assert err.error.decline_code == "generic_decline"
    assert err.user_message == "Your card was declined."
    assert err.json_body is not None
    declined = err.json_body["error"]["payment_intent"]
    assert declined["status"] == "requires_payment_method"
    intent = await stripe_client.v1.payment_intents.retrieve_async(declined["id"])
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert intent.last_payment_error.code == "card_declined"

    # The decline is replayed under the same key, without a second payment intent.
    with pytest.raises(stripe.CardError) as replayed:
        await stripe_client.v1.payment_intents.create_async(
            {**VISA_ORDER, "payment_method": "pm_card_chargeDeclined"},
            {"idempotency_key": "order:o-3:charge"},
        )
    assert replayed.value.json_body is not None
    assert replayed.value.json_body["error"]["payment_intent"]["id"] == declined["id"]
    assert replayed.value.headers is not None
    assert replayed.value.headers.get("idempotent-replayed") == "true"
    assert len((await ledger(control_http))["payment_intents"]) == 1

    [event] = await eventually(lambda: stripe_events(control_http, "payment_intent.payment_failed"))
    assert event.data.object["id"] == declined["id"]


async def test_unknown_payment_method_is_an_invalid_request(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.create_async(
            {**VISA_ORDER, "payment_method": "pm_card_doesNotExist"}
        )
    assert raised.value.http_status == 400
    assert raised.value.param == "payment_method"
    assert (await ledger(control_http))["payment_intents"] == []


async def test_authentication_required_then_authenticated_delivers_signed_webhook(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(
        {**VISA_ORDER, "payment_method": "pm_card_authenticationRequired"},
        {"idempotency_key": "order:o-4:charge"},
    )
    assert intent.status == "requires_action"
    assert intent.next_action is not None
    assert intent.next_action.type == "use_stripe_sdk"

    response = await control_http.post(f"/_sandbox/stripe/payment_intents/{intent.id}/authenticate")
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    fetched = await stripe_client.v1.payment_intents.retrieve_async(intent.id)
    assert fetched.status == "succeeded"
    assert isinstance(fetched.latest_charge, str)

    [event] = await eventually(lambda: stripe_events(control_http, "payment_intent.succeeded"))
    assert event.object == "event"
    assert event.id.startswith("evt_")
    assert event.livemode is False
    assert event.data.object["id"] == intent.id
    assert event.data.object["status"] == "succeeded"
    assert event.data.object["metadata"]["order_id"] == "o-1"
    # Tampering breaks the signature.
    [call] = [
        c
        for c in await hook_requests(control_http, ENGINE_HOOK)
        if json.loads(c["body"])["type"] == "payment_intent.succeeded"
    ]
    assert call["headers"]["content-type"] == "application/json"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            call["body"].replace("succeeded", "canceled"),
            call["headers"]["stripe-signature"],
            WEBHOOK_SECRET,
        )

    # Authenticating twice is refused.
    again = await control_http.post(f"/_sandbox/stripe/payment_intents/{intent.id}/authenticate")
    assert again.status_code == 409


async def test_failed_authentication_and_cancel(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(
        {
            **VISA_ORDER,
            "payment_method": "pm_card_authenticationRequired",
            "return_url": "https://shop.example/back",
        }
    )
    assert intent.next_action is not None
    assert intent.next_action.type == "redirect_to_url"

    failed = await control_http.post(
        f"/_sandbox/stripe/payment_intents/{intent.id}/authenticate", json={"outcome": "fail"}
    )
    assert failed.json()["status"] == "requires_payment_method"
    assert failed.json()["last_payment_error"]["code"] == "payment_intent_authentication_failure"

    canceled = await stripe_client.v1.payment_intents.cancel_async(
        intent.id, {"cancellation_reason": "abandoned"}
    )
    assert canceled.status == "canceled"
    assert canceled.cancellation_reason == "abandoned"
    [entry] = (await ledger(control_http))["payment_intents"]
    assert entry["status"] == "canceled"

    paid = await stripe_client.v1.payment_intents.create_async(VISA_ORDER)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.cancel_async(paid.id)
    assert raised.value.code == "payment_intent_unexpected_state"


# -------------------------------------------------------------- idempotency


async def test_idempotent_replay_returns_the_same_intent(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    first = await stripe_client.v1.payment_intents.create_async(
        VISA_ORDER, {"idempotency_key": "order:o-5:charge"}
    )
    second = await stripe_client.v1.payment_intents.create_async(
        VISA_ORDER, {"idempotency_key": "order:o-5:charge"}
    )

    assert second.id == first.id
    assert second.latest_charge == first.latest_charge
    assert second.last_response.headers.get("idempotent-replayed") == "true"
    assert first.last_response.headers.get("idempotent-replayed") is None
    entries = (await ledger(control_http))["payment_intents"]
    assert [e["id"] for e in entries] == [first.id]


async def test_same_key_different_params_is_an_idempotency_error(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    await stripe_client.v1.payment_intents.create_async(
        VISA_ORDER, {"idempotency_key": "order:o-6:charge"}
    )
    with pytest.raises(stripe.IdempotencyError) as raised:
        await stripe_client.v1.payment_intents.create_async(
            {**VISA_ORDER, "amount": 9999}, {"idempotency_key": "order:o-6:charge"}
        )
    assert raised.value.http_status == 400
    assert len((await ledger(control_http))["payment_intents"]) == 1


async def test_missing_api_key_is_an_authentication_error(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        response = await http.post("/stripe/v1/payment_intents", data={"amount": "100"})
        basic = await http.get(
            "/stripe/v1/payment_intents/pi_x", headers={"Authorization": "Basic x"}
        )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert basic.status_code == 401


# ------------------------------------------------------------------ refunds


async def test_refunds_up_to_the_captured_amount(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(VISA_ORDER)

    partial = await stripe_client.v1.refunds.create_async(
        {
            "payment_intent": intent.id,
            "amount": 1000,
            "reason": "requested_by_customer",
            "metadata": {"order_id": "o-1"},
        },
        {"idempotency_key": "order:o-1:refund:1"},
    )
    assert partial.object == "refund"
    assert partial.status == "succeeded"
    assert partial.amount == 1000
    assert partial.payment_intent == intent.id
    assert partial.charge == intent.latest_charge

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        await stripe_client.v1.refunds.create_async({"payment_intent": intent.id, "amount": 1501})
    assert too_much.value.http_status == 400
    assert too_much.value.code == "amount_too_large"

    rest = await stripe_client.v1.refunds.create_async({"payment_intent": intent.id})
    assert rest.amount == 1500
    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        await stripe_client.v1.refunds.create_async({"payment_intent": intent.id})
    assert nothing_left.value.code == "charge_already_refunded"

    fetched = await stripe_client.v1.refunds.retrieve_async(partial.id)
    assert fetched.id == partial.id
    assert fetched.metadata["order_id"] == "o-1"
    charge = await stripe_client.v1.charges.retrieve_async(str(intent.latest_charge))
    assert charge.amount_refunded == 2500
    assert charge.refunded is True

    book = await ledger(control_http)
    assert [r["amount"] for r in book["refunds"]] == [1000, 1500]
    assert book["refunds"][0]["idempotency_key"] == "order:o-1:refund:1"
    assert book["refunds"][0]["metadata"] == {"order_id": "o-1"}
    assert book["payment_intents"][0]["amount_refunded"] == 2500


async def test_refund_of_an_unpaid_intent_is_refused(stripe_client: stripe.StripeClient) -> None:
    intent = await stripe_client.v1.payment_intents.create_async({"amount": 500, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError):
        await stripe_client.v1.refunds.create_async({"payment_intent": intent.id})
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await stripe_client.v1.refunds.create_async({"payment_intent": "pi_missing"})
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"


# ------------------------------------------------------------------- faults


async def test_fault_before_does_nothing_and_answers_the_error(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    await add_fault(
        control_http, provider="stripe", method="POST", path="/v1/payment_intents", status=503,
        times=1,
    )  # fmt: skip

    with pytest.raises(stripe.APIError) as raised:
        await stripe_client.v1.payment_intents.create_async(
            VISA_ORDER, {"idempotency_key": "order:o-7:charge"}
        )
    assert raised.value.http_status == 503
    assert (await ledger(control_http))["payment_intents"] == []

    # The rule is spent: the retry goes through.
    intent = await stripe_client.v1.payment_intents.create_async(
        VISA_ORDER, {"idempotency_key": "order:o-7:charge"}
    )
    assert intent.status == "succeeded"

    # With SDK retries, a transient 500 is invisible to the caller.
    await add_fault(control_http, provider="stripe", path="/v1/refunds", status=500, times=1)
    retrying = make_stripe_client(sandbox.base_url, max_network_retries=2)
    refund = await retrying.v1.refunds.create_async({"payment_intent": intent.id})
    assert refund.status == "succeeded"
    assert len((await ledger(control_http))["refunds"]) == 1


async def test_fault_after_does_the_work_and_loses_the_response(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    await add_fault(
        control_http, provider="stripe", method="POST", path="/v1/payment_intents", status=500,
        times=1, when="after",
    )  # fmt: skip

    with pytest.raises(stripe.APIError) as raised:
        await stripe_client.v1.payment_intents.create_async(
            VISA_ORDER, {"idempotency_key": "order:o-8:charge"}
        )
    assert raised.value.http_status == 500
    assert raised.value.json_body is not None
    assert raised.value.json_body["error"]["type"] == "api_error"
    [charged] = (await ledger(control_http))["payment_intents"]
    assert charged["status"] == "succeeded"

    intent = await stripe_client.v1.payment_intents.create_async(
        VISA_ORDER, {"idempotency_key": "order:o-8:charge"}
    )
    assert intent.id == charged["id"]
    assert intent.status == "succeeded"
    assert intent.last_response.headers.get("idempotent-replayed") == "true"
    assert len((await ledger(control_http))["payment_intents"]) == 1


async def test_fault_latency_rate_drop_and_clear(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    await add_fault(control_http, provider="stripe", method="GET", latency_ms=300)
    intent = await stripe_client.v1.payment_intents.create_async(VISA_ORDER)
    started = time.monotonic()
    await stripe_client.v1.payment_intents.retrieve_async(intent.id)
    assert time.monotonic() - started >= 0.3

    # rate 0: matches (with the latency) but never fails
    await add_fault(control_http, provider="stripe", path="/v1/charges", status=500, rate=0.0)
    charge = await stripe_client.v1.charges.retrieve_async(str(intent.latest_charge))
    assert charge.id == intent.latest_charge

    cleared = await control_http.delete("/_sandbox/faults")
    assert cleared.json() == {"cleared": 2}

    await add_fault(control_http, provider="stripe", path="/v1/payment_intents/", status=0, times=1)
    with pytest.raises(stripe.APIConnectionError):
        await stripe_client.v1.payment_intents.retrieve_async(intent.id)
    fetched = await stripe_client.v1.payment_intents.retrieve_async(intent.id)
    assert fetched.id == intent.id

    # Faults of another provider do not touch Stripe.
    await add_fault(control_http, provider="email", status=500)
    assert (await stripe_client.v1.payment_intents.retrieve_async(intent.id)).id == intent.id


async def test_fault_rule_validation(control_http: httpx.AsyncClient, sandbox: Sandbox) -> None:
    bad_provider = await control_http.post(
        "/_sandbox/faults", json={"provider": "paypal", "status": 500}
    )
    assert bad_provider.status_code == 422
    bad_status = await control_http.post(
        "/_sandbox/faults", json={"provider": "stripe", "status": 42}
    )
    assert bad_status.status_code == 422


# -------------------------------------------------------------------- email


async def test_email_idempotency_key_dedupes(
    control_http: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    message = {
        "from": "orders@fulfil.example",
        "to": "ada@example.com",
        "subject": "Your order o-1 is confirmed",
        "text": "Hello Ada",
        "tags": {"order_id": "o-1", "kind": "confirmed"},
    }
    key = {"Idempotency-Key": "order:o-1:email:confirmed"}
    first = await control_http.post("/email/send", json=message, headers=key)
    second = await control_http.post("/email/send", json=message, headers=key)
    other = await control_http.post(
        "/email/send", json=message, headers={"Idempotency-Key": "order:o-1:email:shipped"}
    )

    assert first.status_code == second.status_code == other.status_code == 200
    assert first.json()["id"] == second.json()["id"] != other.json()["id"]
    emails = (await ledger(control_http))["emails"]
    assert [e["id"] for e in emails] == [first.json()["id"], other.json()["id"]]
    assert emails[0]["to"] == ["ada@example.com"]
    assert emails[0]["tags"] == {"order_id": "o-1", "kind": "confirmed"}
    assert emails[0]["idempotency_key"] == "order:o-1:email:confirmed"
    assert emails[0]["status"] == "sent"

    missing = await control_http.post("/email/send", json={"to": "ada@example.com"})
    assert missing.status_code == 422

    await add_fault(control_http, provider="email", path="/send", status=503, times=1)
    failed = await control_http.post("/email/send", json=message)
    assert failed.status_code == 503
    assert "error" in failed.json()
    assert len((await ledger(control_http))["emails"]) == 2


# ------------------------------------------------------- hooks, clock, reset


async def test_hooks_record_requests_and_fail_the_first_n(
    control_http: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    statuses = [
        (
            await control_http.post(
                "/_sandbox/hooks/merchant-1?fail=2",
                content=f'{{"attempt": {i}}}',
                headers={"Fulfil-Signature": f"t=1,v1=sig{i}"},
            )
        ).status_code
        for i in range(3)
    ]
    assert statuses == [500, 500, 200]

    calls = await hook_requests(control_http, "merchant-1")
    assert [c["body"] for c in calls] == ['{"attempt": 0}', '{"attempt": 1}', '{"attempt": 2}']
    assert [c["status"] for c in calls] == [500, 500, 200]
    assert calls[0]["method"] == "POST"
    assert calls[0]["path"] == "/_sandbox/hooks/merchant-1"
    assert calls[2]["headers"]["fulfil-signature"] == "t=1,v1=sig2"
    assert calls[0]["at"].endswith("Z")
    assert await hook_requests(control_http, "nobody") == []


async def test_webhook_sender_retries_until_delivered(
    control_http: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    sender = WebhookSender(max_attempts=5, initial_backoff=0.01)
    try:
        delivery = sender.deliver(
            f"{sandbox.base_url}/_sandbox/hooks/flaky?fail=2",
            b'{"hello": "world"}',
            headers={"X-Static": "1"},
            sign=lambda body: {"X-Signature": str(len(body))},
            description="test",
        )
        await eventually(lambda: _done(delivery.status))
        assert delivery.status == "delivered"
        assert delivery.attempts == 3
        calls = await hook_requests(control_http, "flaky")
        assert [c["status"] for c in calls] == [500, 500, 200]
        assert calls[-1]["headers"]["x-signature"] == "18"
        assert calls[-1]["headers"]["x-static"] == "1"

        hopeless = sender.deliver("http://127.0.0.1:9/nothing-listens", b"{}")
        await eventually(lambda: _done(hopeless.status))
        assert hopeless.status == "failed"
        assert hopeless.attempts == 5
    finally:
        await sender.aclose()


async def _done(status: str) -> bool:
    return status != "pending"


async def test_clock_advances_and_notifies_listeners(
    control_http: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    moves: list[float] = []

    async def listener(seconds: float, now: float) -> None:
        moves.append(seconds)

    sandbox.state.clock.on_advance(listener)
    before = (await control_http.get("/_sandbox/clock")).json()
    assert before["offset_seconds"] == 0

    advanced = await control_http.post("/_sandbox/clock/advance", json={"seconds": 3600})
    assert advanced.status_code == 200
    assert advanced.json()["offset_seconds"] == 3600
    assert advanced.json()["now_unix"] >= before["now_unix"] + 3600
    assert moves == [3600]
    backwards = await control_http.post("/_sandbox/clock/advance", json={"seconds": -1})
    assert backwards.status_code == 422

    await control_http.post("/_sandbox/reset")
    assert (await control_http.get("/_sandbox/clock")).json()["offset_seconds"] == 0


async def test_reset_clears_everything(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    await stripe_client.v1.payment_intents.create_async(VISA_ORDER, {"idempotency_key": "k-reset"})
    await control_http.post("/_sandbox/hooks/x")
    await add_fault(control_http, provider="stripe", status=500, path="/nowhere")

    assert (await control_http.post("/_sandbox/reset")).status_code == 200

    book = await ledger(control_http)
    assert book["payment_intents"] == []
    assert set(book) >= {
        "payment_intents", "refunds", "transfers", "labels", "label_refunds",
        "tiktok_shipments", "cloudflare_resources", "emails",
    }  # fmt: skip
    assert await hook_requests(control_http, "x") == []
    assert (await control_http.get("/_sandbox/faults")).json() == []
    # The idempotency key is forgotten too: a new intent is made.
    intent = await stripe_client.v1.payment_intents.create_async(
        VISA_ORDER, {"idempotency_key": "k-reset"}
    )
    assert intent.last_response.headers.get("idempotent-replayed") is None
    assert (await control_http.get("/_sandbox/healthz")).json() == {"status": "ok"}


# ------------------------------------------------------------------ connect


async def test_connect_accounts_transfers_reversals_and_disputes(
    stripe_client: stripe.StripeClient, control_http: httpx.AsyncClient
) -> None:
    account = await stripe_client.v1.accounts.create_async(
        {"type": "express", "email": "seller@example.com", "metadata": {"merchant_id": "m-1"}}
    )
    assert account.id.startswith("acct_")
    assert account.type == "express"
    assert (
        await stripe_client.v1.accounts.retrieve_async(account.id)
    ).email == "seller@example.com"
    link = await stripe_client.v1.account_links.create_async(
        {
            "account": account.id,
            "type": "account_onboarding",
            "refresh_url": "https://shop.example/refresh",
            "return_url": "https://shop.example/return",
        }
    )
    assert link.url

    intent = await stripe_client.v1.payment_intents.create_async(
        {**VISA_ORDER, "transfer_group": "payout-p-1"}
    )
    transfer = await stripe_client.v1.transfers.create_async(
        {
            "amount": 2125,
            "currency": "usd",
            "destination": account.id,
            "transfer_group": "payout-p-1",
            "metadata": {"payout_id": "p-1"},
        },
        {"idempotency_key": "payout:p-1:transfer"},
    )
    assert transfer.object == "transfer"
    assert transfer.destination == account.id
    assert transfer.amount == 2125

    reversal = await stripe_client.v1.transfers.reversals.create_async(transfer.id, {"amount": 125})
    assert reversal.object == "transfer_reversal"
    assert reversal.transfer == transfer.id
    with pytest.raises(stripe.InvalidRequestError):
        await stripe_client.v1.transfers.reversals.create_async(transfer.id, {"amount": 2001})
    fetched = await stripe_client.v1.transfers.retrieve_async(transfer.id)
    assert fetched.amount_reversed == 125

    [entry] = (await ledger(control_http))["transfers"]
    assert entry["status"] == "partially_reversed"
    assert entry["metadata"] == {"payout_id": "p-1"}
    assert entry["idempotency_key"] == "payout:p-1:transfer"
    assert entry["destination"] == account.id

    opened = await control_http.post(
        f"/_sandbox/stripe/charges/{intent.latest_charge}/dispute", json={"reason": "fraudulent"}
    )
    assert opened.status_code == 201
    dispute = opened.json()
    assert dispute["object"] == "dispute"
    assert dispute["payment_intent"] == intent.id
    [event] = await eventually(lambda: stripe_events(control_http, "charge.dispute.created"))
    assert event.data.object["id"] == dispute["id"]
    assert event.data.object["charge"] == intent.latest_charge
    book = await ledger(control_http)
    assert book["payment_intents"][0]["disputed"] is True
    assert book["disputes"][0]["metadata"]["order_id"] == "o-1"


# -------------------------------------------------------------- form codec


def test_decode_params_nested_and_indexed() -> None:
    params = decode_params(
        [
            ("amount", "100"),
            ("metadata[order_id]", "o-1"),
            ("metadata[0]", "digit key stays a map key"),
            ("payment_method_types[0]", "card"),
            ("payment_method_types[1]", "link"),
            ("expand[]", "latest_charge"),
            ("shipping[address][line1]", "1 Main St"),
        ]
    )
    assert params == {
        "amount": "100",
        "metadata": {"order_id": "o-1", "0": "digit key stays a map key"},
        "payment_method_types": ["card", "link"],
        "expand": ["latest_charge"],
        "shipping": {"address": {"line1": "1 Main St"}},
    }
