"""TikTok Shop webhooks (``Authorization`` = HMAC of app key + body): recorded once, then
the order's TikTokFulfillment is started or fed by signal-with-start."""

from __future__ import annotations

import logging
import math
import re
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ResourcesDep, SettingsDep
from api.problems import malformed_event, problem_responses, unauthorized
from api.schemas import WebhookReceipt
from api.webhooks.common import parse_object, record
from db import inbox, merchants, outbox
from db.models import OutboxMessage
from fulfil.enums import OrderStatus
from fulfil.ids import tiktok_workflow_id
from fulfil.messages.shipment import ShipmentConfig
from fulfil.messages.tiktok import TikTokConfig, TikTokFulfillmentInput, TikTokOrderEvent
from fulfil.settings import Settings
from fulfil.signatures import same_secret, tiktok_webhook_signature
from fulfil.temporal import MERCHANT_ID, ORDER_STATUS, TIKTOK_ORDER_ID
from workflows.names import signal_name, workflow_name
from workflows.tiktok_fulfillment import TikTokFulfillment

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


TIKTOK_ORDER_STATUS_CHANGE = 1
# What the engine can use (ids become workflow ids and order columns).
TIKTOK_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
NOTIFICATION_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")
STATUS = re.compile(r"[A-Z_]{1,32}")


@router.post(
    "/tiktok",
    summary="TikTok Shop notifications (signed with TIKTOK_APP_SECRET)",
    description="ORDER_STATUS_CHANGE (type 1) starts or feeds the order's TikTokFulfillment "
    "(signal-with-start); other types are recorded only. Deduplicated on "
    "`tts_notification_id`. A verified notification the engine cannot use (unknown shop, "
    "odd shape) is recorded and answered 200 with `ignored` (400 when not a JSON object).",
    responses=problem_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED),
    response_model=WebhookReceipt,
    response_model_exclude_none=True,
)
async def tiktok_webhook(
    request: Request,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
    authorization: Annotated[str | None, Header()] = None,
) -> WebhookReceipt | Response:
    raw = await request.body()
    expected = tiktok_webhook_signature(settings.tiktok_app_key, settings.tiktok_app_secret, raw)
    if not same_secret((authorization or "").strip().lower(), expected):
        raise unauthorized("The TikTok signature does not verify.")
    event, unreadable = parse_object(raw)
    notification_id = event.get("tts_notification_id") if event else None
    kind = event.get("type") if event else None
    async with resources.webhooks.transaction("tiktok") as session:
        fresh = await record(
            session,
            provider="tiktok",
            raw=raw,
            event=event,
            event_id=notification_id,
            kind=f"type_{kind}",
        )
        if not fresh:
            return WebhookReceipt(received=True, duplicate=True)
        if event is None:
            # Recorded (committed): answered, not raised, so the transaction is kept.
            return malformed_event(f"Recorded, but {unreadable}.").response()
        ignored = await _relay_order_status(session, settings, event, background, resources)
        log.info(
            "tiktok notification recorded",
            extra={"notification_id": str(notification_id)[:128], "ignored": ignored},
        )
        return WebhookReceipt(received=True, ignored=ignored)


def _text(value: object, pattern: re.Pattern[str]) -> str | None:
    """A usable id: digits and such, short; numbers are taken as their digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _unix_time(value: object) -> int:
    """TikTok sends seconds; a number in a string or with a fraction still counts."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return 0
    else:
        return 0
    return int(number) if math.isfinite(number) and 0 <= number < 2**40 else 0


async def _relay_order_status(
    session: AsyncSession,
    settings: Settings,
    event: dict[str, Any],
    background: BackgroundTasks,
    resources: Any,
) -> str | None:
    """Start or feed the order's workflow; why not, when it cannot be used."""
    if event.get("type") != TIKTOK_ORDER_STATUS_CHANGE:
        return None  # another kind of notification: recorded only
    raw_data = event.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    notification_id = _text(event.get("tts_notification_id"), NOTIFICATION_ID)
    shop_id = _text(event.get("shop_id"), TIKTOK_ID)
    tiktok_order_id = _text(data.get("order_id"), TIKTOK_ID)
    order_status = data.get("order_status")
    if notification_id is None or shop_id is None or tiktok_order_id is None:
        return "no usable tts_notification_id, shop_id or order_id"
    if not isinstance(order_status, str) or not STATUS.fullmatch(order_status):
        return "no usable order_status"
    merchant = await merchants.get_merchant_by_tiktok_shop(session, shop_id)
    if merchant is None:
        log.warning("tiktok notification for an unknown shop", extra={"shop_id": shop_id})
        return "unknown shop"
    signal = TikTokOrderEvent(
        notification_id=notification_id,
        order_status=order_status,
        update_time=_unix_time(data.get("update_time")) or _unix_time(event.get("timestamp")),
    )
    outbox_id = await inbox.add_outbox_message(
        session,
        tiktok_order_event(
            settings,
            shop_id=shop_id,
            tiktok_order_id=tiktok_order_id,
            merchant_id=merchant.id,
            event=signal,
        ),
    )
    background.add_task(resources.dispatch.schedule, [outbox_id])
    log.info(
        "tiktok order event relayed",
        extra={"tiktok_order_id": tiktok_order_id, "order_status": order_status},
    )
    return None


def tiktok_order_event(
    settings: Settings,
    *,
    shop_id: str,
    tiktok_order_id: str,
    merchant_id: str,
    event: TikTokOrderEvent,
) -> OutboxMessage:
    """Signal-with-start: the first event of an order starts its TikTokFulfillment."""
    inp = TikTokFulfillmentInput(
        shop_id=shop_id,
        tiktok_order_id=tiktok_order_id,
        merchant_id=merchant_id,
        config=TikTokConfig(shipment=ShipmentConfig.from_settings(settings)),
    )
    return outbox.signal_message(
        tiktok_workflow_id(shop_id, tiktok_order_id),
        signal_name(TikTokFulfillment.order_status_changed),
        event.model_dump(mode="json"),
        start={
            "workflow": workflow_name(TikTokFulfillment.run),
            "arg": inp.model_dump(mode="json"),
            "search_attributes": {
                MERCHANT_ID.name: merchant_id,
                TIKTOK_ORDER_ID.name: tiktok_order_id,
                ORDER_STATUS.name: OrderStatus.PENDING.value,
            },
            "summary": f"TikTok order {tiktok_order_id} · shop {shop_id}",
            "task_queue": settings.task_queue,
        },
    )
