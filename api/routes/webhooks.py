"""Provider webhooks: verified, recorded in the inbox once, relayed to workflows via the outbox.

A webhook is answered 2xx only after it is committed; a redelivery answers
2xx and changes nothing; a bad signature answers 401 and records nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
from http import HTTPStatus
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, BackgroundTasks, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ResourcesDep, SessionDep, SettingsDep
from api.problems import Problem, problem_responses, unauthorized
from db import merchants, orders
from fulfil.ids import order_workflow_id, shipment_workflow_id, tiktok_workflow_id
from fulfil.models import (
    OrderStatus,
    PaymentSucceeded,
    ShipmentConfig,
    TikTokConfig,
    TikTokFulfillmentInput,
    TikTokOrderEvent,
    TrackingChanged,
)
from fulfil.outbox import signal_message
from fulfil.schemas import WebhookReceipt
from fulfil.signatures import tiktok_webhook_signature

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


TIKTOK_ORDER_STATUS_CHANGE = 1


@router.post(
    "/tiktok",
    summary="TikTok Shop notifications (signed with TIKTOK_APP_SECRET)",
    description="ORDER_STATUS_CHANGE (type 1) starts or feeds the order's TikTokFulfillment "
    "(signal-with-start); other types are recorded only. Deduplicated on "
    "`tts_notification_id`.",
    responses=problem_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED),
)
async def tiktok_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
    authorization: Annotated[str | None, Header()] = None,
) -> WebhookReceipt:
    raw = await request.body()
    expected = tiktok_webhook_signature(settings.tiktok_app_key, settings.tiktok_app_secret, raw)
    if not authorization or not hmac.compare_digest(authorization.strip().lower(), expected):
        raise unauthorized("The TikTok signature does not verify.")
    try:
        event: Any = json.loads(raw)
    except ValueError as err:
        raise _bad_event("The notification is not valid JSON.") from err
    if not isinstance(event, dict):
        raise _bad_event("The notification is not a JSON object.")
    notification_id, shop_id = event.get("tts_notification_id"), event.get("shop_id")
    data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
    if not isinstance(notification_id, str) or not notification_id or not isinstance(shop_id, str):
        raise _bad_event("The notification has no tts_notification_id or shop_id.")
    kind = event.get("type")
    fresh = await orders.record_inbox_event(
        session,
        provider="tiktok",
        event_id=notification_id,
        event_type=f"type_{kind}",
        payload=event,
    )
    if not fresh:
        return WebhookReceipt(received=True, duplicate=True)

    tiktok_order_id, order_status = data.get("order_id"), data.get("order_status")
    if kind != TIKTOK_ORDER_STATUS_CHANGE or not tiktok_order_id or not order_status:
        log.info("tiktok notification recorded", extra={"notification_id": notification_id})
        return WebhookReceipt(received=True)
    merchant = await merchants.get_merchant_by_tiktok_shop(session, shop_id)
    if merchant is None:
        log.warning("tiktok notification for an unknown shop", extra={"shop_id": shop_id})
        return WebhookReceipt(received=True)

    tiktok_order_id = str(tiktok_order_id)
    signal = TikTokOrderEvent(
        notification_id=notification_id,
        order_status=str(order_status),
        update_time=int(data.get("update_time") or event.get("timestamp") or 0),
    )
    start = TikTokFulfillmentInput(
        shop_id=shop_id,
        tiktok_order_id=tiktok_order_id,
        merchant_id=merchant.id,
        config=TikTokConfig(
            shipment=ShipmentConfig(tracking_poll_seconds=settings.tracking_poll_seconds)
        ),
    )
    outbox_id = await orders.add_outbox_message(
        session,
        signal_message(
            tiktok_workflow_id(shop_id, tiktok_order_id),
            "order_status_changed",
            signal.model_dump(mode="json"),
            start={
                "workflow": "TikTokFulfillment",
                "arg": start.model_dump(mode="json"),
                "search_attributes": {
                    "MerchantId": merchant.id,
                    "TikTokOrderId": tiktok_order_id,
                    "OrderStatus": OrderStatus.PENDING.value,
                },
                "summary": f"TikTok order {tiktok_order_id} · shop {shop_id}",
                "task_queue": settings.task_queue,
            },
        ),
    )
    background.add_task(resources.dispatch.schedule, [outbox_id])
    log.info(
        "tiktok order event recorded",
        extra={
            "notification_id": notification_id,
            "tiktok_order_id": tiktok_order_id,
            "order_status": signal.order_status,
        },
    )
    return WebhookReceipt(received=True)


@router.post(
    "/shippo",
    summary="Shippo track_updated (authenticated by ?token=SHIPPO_WEBHOOK_TOKEN)",
    description="Pings the order's Shipment workflow, which re-reads the tracking status "
    "from Shippo before acting: the body itself is never trusted.",
    responses=problem_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED),
)
async def shippo_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
    token: Annotated[str | None, Query()] = None,
) -> WebhookReceipt:
    if not token or not hmac.compare_digest(token, settings.shippo_webhook_token):
        raise unauthorized("The Shippo webhook token does not match.")
    raw = await request.body()
    try:
        event: Any = json.loads(raw)
    except ValueError as err:
        raise _bad_event("The event is not valid JSON.") from err
    track = event.get("data") if isinstance(event, dict) else None
    if not isinstance(track, dict) or not isinstance(track.get("tracking_number"), str):
        raise _bad_event("The event has no data.tracking_number.")
    tracking_number: str = track["tracking_number"]
    status: dict[str, Any] = (
        track["tracking_status"] if isinstance(track.get("tracking_status"), dict) else {}
    )
    # Shippo sends no event id: a status of a parcel at a time is the event.
    event_id = ":".join(
        str(part)
        for part in (
            track.get("carrier"),
            tracking_number,
            status.get("status"),
            status.get("status_date") or status.get("object_id"),
        )
    )
    fresh = await orders.record_inbox_event(
        session,
        provider="shippo",
        event_id=event_id[:128],
        event_type=str(event.get("event") or "track_updated"),
        payload=event,
    )
    if not fresh:
        return WebhookReceipt(received=True, duplicate=True)
    order_id = await orders.order_id_by_tracking_number(session, tracking_number)
    if order_id is None:
        log.info("tracking update for no known order", extra={"tracking_number": tracking_number})
        return WebhookReceipt(received=True)
    outbox_id = await orders.add_outbox_message(
        session,
        signal_message(
            shipment_workflow_id(order_id),
            "tracking_changed",
            TrackingChanged(tracking_number=tracking_number).model_dump(mode="json"),
        ),
    )
    background.add_task(resources.dispatch.schedule, [outbox_id])
    log.info(
        "tracking update recorded",
        extra={"order_id": order_id, "tracking_number": tracking_number},
    )
    return WebhookReceipt(received=True)
