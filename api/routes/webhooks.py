"""Provider webhooks: verified, recorded in the inbox once, relayed to workflows via the outbox.

A webhook is answered 2xx only after it is committed; a redelivery answers
2xx and changes nothing; a bad signature answers 401 and records nothing.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, BackgroundTasks, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ResourcesDep, SessionDep, SettingsDep
from api.problems import Problem, problem_responses, unauthorized
from db import orders
from fulfil.ids import order_workflow_id
from fulfil.models import PaymentSucceeded
from fulfil.outbox import signal_message
from fulfil.schemas import WebhookReceipt

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

STRIPE_TOLERANCE_SECONDS = 300


def _bad_event(detail: str) -> Problem:
    return Problem(HTTPStatus.BAD_REQUEST, detail, slug="malformed-event")


@router.post(
    "/stripe",
    summary="Stripe events (signed with STRIPE_WEBHOOK_SECRET)",
    description="`payment_intent.succeeded` of an order signals its workflow; "
    "every other event is recorded only.",
    responses=problem_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED),
)
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookReceipt:
    raw = await request.body()
    if not stripe_signature:
        raise unauthorized("Missing Stripe-Signature header.")
    try:
        stripe.Webhook.construct_event(
            raw, stripe_signature, settings.stripe_webhook_secret, STRIPE_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as err:
        raise unauthorized("The Stripe signature does not verify.") from err
    except ValueError as err:  # signed, but not JSON
        raise _bad_event("The event is not valid JSON.") from err

    event: Any = json.loads(raw)
    if not isinstance(event, dict):
        raise _bad_event("The event is not a JSON object.")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise _bad_event("The event has no id or type.")

    fresh = await orders.record_inbox_event(
        session, provider="stripe", event_id=event_id, event_type=event_type, payload=event
    )
    if not fresh:
        return WebhookReceipt(received=True, duplicate=True)

    outbox_id = None
    if event_type == "payment_intent.succeeded":
        outbox_id = await _relay_payment_succeeded(session, event)
    if outbox_id is not None:
        background.add_task(resources.dispatch.schedule, [outbox_id])
    log.info(
        "stripe event recorded",
        extra={"event_id": event_id, "event_type": event_type, "relayed": outbox_id is not None},
    )
    return WebhookReceipt(received=True)


async def _relay_payment_succeeded(session: AsyncSession, event: dict[str, Any]) -> int | None:
    obj = (event.get("data") or {}).get("object") or {}
    metadata = obj.get("metadata") or {}
    order_id = metadata.get("order_id")
    payment_intent_id = obj.get("id")
    if not isinstance(order_id, str) or not isinstance(payment_intent_id, str):
        return None
    if not await orders.order_exists(session, order_id):
        log.warning("payment for an unknown order", extra={"order_id": order_id})
        return None
    charge = obj.get("latest_charge")
    if isinstance(charge, dict):  # expanded
        charge = charge.get("id")
    signal = PaymentSucceeded(
        payment_intent_id=payment_intent_id,
        charge_id=charge if isinstance(charge, str) else None,
    )
    return await orders.add_outbox_message(
        session,
        signal_message(
            order_workflow_id(order_id), "payment_succeeded", signal.model_dump(mode="json")
        ),
    )
