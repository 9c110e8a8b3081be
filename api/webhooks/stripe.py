"""Stripe webhooks (``Stripe-Signature``, 300 s tolerance either way): recorded once, relayed.

``payment_intent.succeeded`` of an order signals its OrderPlacement, and
``charge.dispute.*`` of a paid-out charge pings its EscrowPayout; each asks Stripe
before it believes anything. Every other event is recorded only. The
signature is checked on the raw bytes before anything is parsed.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ResourcesDep, SettingsDep
from api.problems import malformed_event, problem_responses, unauthorized
from api.resources import Resources
from api.schemas import WebhookReceipt
from api.webhooks.common import parse_object, record
from db import inbox, orders, outbox, payouts
from db.models import OutboxMessage
from fulfil.ids import order_workflow_id, payout_workflow_id
from fulfil.messages.orders import PaymentSucceeded
from fulfil.messages.payouts import StripeDisputeEvent
from fulfil.settings import Settings
from fulfil.signatures import verify_stripe_signature
from workflows.escrow_payout import EscrowPayout
from workflows.names import signal_name
from workflows.order_placement import OrderPlacement

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

STRIPE_TOLERANCE_SECONDS = 300
DISPUTE_EVENTS = frozenset(
    {"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"}
)
MAX_ID = 64


@router.post(
    "/stripe",
    summary="Stripe events (signed with STRIPE_WEBHOOK_SECRET)",
    description="`payment_intent.succeeded` of an order signals its workflow; every other "
    "event is recorded only. A verified event the engine cannot use is recorded and "
    "answered 200 with `ignored` (400 when it is not a JSON object).",
    responses=problem_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED),
    response_model=WebhookReceipt,
    response_model_exclude_none=True,
)
async def stripe_webhook(
    request: Request,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookReceipt | Response:
    return await handle_stripe_webhook(request, settings, resources, background, stripe_signature)


async def handle_stripe_webhook(
    request: Request,
    settings: Settings,
    resources: Resources,
    background: BackgroundTasks,
    stripe_signature: str | None,
) -> WebhookReceipt | Response:
    """Verify, record once, relay: shared by /webhooks/stripe and /api/checkout/webhook."""
    raw = await request.body()
    if not stripe_signature or not verify_stripe_signature(
        settings.stripe_webhook_secret, raw, stripe_signature, tolerance=STRIPE_TOLERANCE_SECONDS
    ):
        raise unauthorized("The Stripe signature does not verify.")
    event, unreadable = parse_object(raw)
    async with resources.webhooks.transaction("stripe") as session:
        return await _record_and_relay(session, resources, background, raw, event, unreadable)


async def _record_and_relay(
    session: AsyncSession,
    resources: Resources,
    background: BackgroundTasks,
    raw: bytes,
    event: dict[str, Any] | None,
    unreadable: str | None,
) -> WebhookReceipt | Response:
    event_id = event.get("id") if event else None
    kind = event.get("type") if event else None
    fresh = await record(
        session, provider="stripe", raw=raw, event=event, event_id=event_id, kind=kind
    )
    if not fresh:
        return WebhookReceipt(received=True, duplicate=True)
    if event is None:
        log.warning("stripe event not readable", extra={"why": unreadable})
        # Recorded (committed): answered, not raised, so the transaction is kept.
        return malformed_event(f"Recorded, but {unreadable}.").response()
    if not isinstance(kind, str):
        return WebhookReceipt(received=True, ignored="the event has no type")

    outbox_id, ignored = None, None
    if kind == "payment_intent.succeeded":
        outbox_id, ignored = await _relay_payment_succeeded(session, event)
    elif kind in DISPUTE_EVENTS:
        outbox_id, ignored = await _relay_dispute(session, event)
    if outbox_id is not None:
        background.add_task(resources.dispatch.schedule, [outbox_id])
    log.info(
        "stripe event recorded",
        extra={"event_type": kind[:64], "relayed": outbox_id is not None, "ignored": ignored},
    )
    return WebhookReceipt(received=True, ignored=ignored)


def _object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _id(value: object) -> str | None:
    """A usable provider id (a short printable string), else None."""
    if isinstance(value, dict):  # an expanded object
        value = value.get("id")
    if isinstance(value, str) and 0 < len(value) <= MAX_ID and value.isprintable():
        return value
    return None


async def _relay_payment_succeeded(
    session: AsyncSession, event: dict[str, Any]
) -> tuple[int | None, str | None]:
    obj = _object(event)
    raw_metadata = obj.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    order_id = _id(metadata.get("order_id"))
    payment_intent_id = _id(obj.get("id"))
    if order_id is None or payment_intent_id is None:
        return None, "no order_id in the payment intent's metadata"
    if not await orders.order_exists(session, order_id):
        log.warning("payment for an unknown order", extra={"order_id": order_id})
        return None, "unknown order"
    message = payment_succeeded(order_id, payment_intent_id, _id(obj.get("latest_charge")))
    return await inbox.add_outbox_message(session, message), None


async def _relay_dispute(
    session: AsyncSession, event: dict[str, Any]
) -> tuple[int | None, str | None]:
    """Ping the payout of the disputed charge; it asks Stripe what the dispute is."""
    obj = _object(event)
    dispute_id = _id(obj.get("id"))
    charge_id, intent_id = _id(obj.get("charge")), _id(obj.get("payment_intent"))
    if dispute_id is None:
        return None, "no dispute id"
    payout_id = None
    if charge_id is not None:
        payout_id = await payouts.payout_for_charge(session, charge_id)
    if payout_id is None and intent_id is not None:
        payout_id = await payouts.payout_for_payment_intent(session, intent_id)
    if payout_id is None:
        return None, "no payout for the disputed charge"
    message = outbox.signal_message(
        payout_workflow_id(payout_id),
        signal_name(EscrowPayout.stripe_dispute),
        StripeDisputeEvent(dispute_id=dispute_id).model_dump(mode="json"),
    )
    return await inbox.add_outbox_message(session, message), None


def payment_succeeded(
    order_id: str, payment_intent_id: str, charge_id: str | None
) -> OutboxMessage:
    signal = PaymentSucceeded(payment_intent_id=payment_intent_id, charge_id=charge_id)
    return outbox.signal_message(
        order_workflow_id(order_id),
        signal_name(OrderPlacement.payment_succeeded),
        signal.model_dump(mode="json"),
    )
