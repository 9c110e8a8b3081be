"""Shippo ``track_updated`` webhooks (``?token=``): they ping the order's Shipment.

The Shipment re-reads the status from Shippo before acting: the body itself is
never trusted. Shippo sends no event id, so a parcel's status at a time is the
event (carrier + tracking number + status + status date).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response

from api.deps import ResourcesDep, SettingsDep
from api.problems import malformed_event, problem_responses, unauthorized
from api.schemas import WebhookReceipt
from api.webhooks.common import parse_object, record
from db import inbox, orders, outbox
from db.models import OutboxMessage
from fulfil.ids import shipment_workflow_id
from fulfil.messages.shipment import TrackingChanged
from fulfil.signatures import same_secret
from workflows.names import signal_name
from workflows.shipment import Shipment

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

TRACKING_NUMBER = re.compile(r"[0-9A-Za-z_-]{1,64}")


@router.post(
    "/shippo",
    summary="Shippo track_updated (authenticated by ?token=SHIPPO_WEBHOOK_TOKEN)",
    description="Pings the order's Shipment workflow, which re-reads the tracking status "
    "from Shippo before acting: the body itself is never trusted. The token is checked "
    "before the body is read.",
    responses=problem_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED),
    response_model=WebhookReceipt,
    response_model_exclude_none=True,
)
async def shippo_webhook(
    request: Request,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
    token: Annotated[str | None, Query()] = None,
) -> WebhookReceipt | Response:
    if not same_secret(token, settings.shippo_webhook_token):
        raise unauthorized("The Shippo webhook token does not match.")
    raw = await request.body()
    event, unreadable = parse_object(raw)
    track = event.get("data") if event else None
    track = track if isinstance(track, dict) else {}
    status = track.get("tracking_status")
    status = status if isinstance(status, dict) else {}
    tracking_number = track.get("tracking_number")
    usable = isinstance(tracking_number, str) and TRACKING_NUMBER.fullmatch(tracking_number)
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
    async with resources.webhooks.transaction("shippo") as session:
        fresh = await record(
            session,
            provider="shippo",
            raw=raw,
            event=event,
            event_id=event_id if event else None,
            kind=(event or {}).get("event") or "track_updated",
        )
        if not fresh:
            return WebhookReceipt(received=True, duplicate=True)
        if event is None:
            # Recorded (committed): answered, not raised, so the transaction is kept.
            return malformed_event(f"Recorded, but {unreadable}.").response()
        if not usable:
            return WebhookReceipt(received=True, ignored="no usable data.tracking_number")
        assert isinstance(tracking_number, str)
        order_id = await orders.order_id_by_tracking_number(session, tracking_number)
        if order_id is None:
            log.info(
                "tracking update for no known order", extra={"tracking_number": tracking_number}
            )
            return WebhookReceipt(received=True, ignored="no order has this tracking number")
        outbox_id = await inbox.add_outbox_message(
            session, tracking_changed(order_id, tracking_number)
        )
        background.add_task(resources.dispatch.schedule, [outbox_id])
        log.info(
            "tracking update recorded",
            extra={"order_id": order_id, "tracking_number": tracking_number},
        )
        return WebhookReceipt(received=True)


def tracking_changed(order_id: str, tracking_number: str) -> OutboxMessage:
    return outbox.signal_message(
        shipment_workflow_id(order_id),
        signal_name(Shipment.tracking_changed),
        TrackingChanged(tracking_number=tracking_number).model_dump(mode="json"),
    )
