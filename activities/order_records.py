"""Order record activities: what order workflows write to (and read from) PostgreSQL.

The order's prices, its status with an event per change, the shipment read
model, the plan a shipment needs, and TikTok orders saved as ours. All SQL is
in :mod:`db.order_records`; each write is keyed so a retry changes nothing.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import order_records
from db.models import Order
from fulfil import errors
from fulfil.enums import OrderStatus
from fulfil.messages.common import Address, ShippingPolicy
from fulfil.messages.orders import (
    OrderRef,
    OrderRefunded,
    OrderStatusChange,
    PricedOrder,
    PriceOrder,
    StatusRecorded,
)
from fulfil.messages.shipment import ShipmentPlan, ShipmentRecord
from fulfil.messages.tiktok import SaveTikTokOrder
from fulfil.money import PricedLine, Totals

log = logging.getLogger(__name__)


def order_not_found(order_id: str) -> ApplicationError:
    return ApplicationError(
        f"order {order_id} not found", type=errors.ORDER_NOT_FOUND, non_retryable=True
    )


async def locked_order(session: AsyncSession, order_id: str) -> Order:
    """The order row, locked for this transaction; an unknown order is a business failure."""
    order = await order_records.lock_order(session, order_id)
    if order is None:
        raise order_not_found(order_id)
    return order


class OrderRecordActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    # The name it had when it also priced; the API prices now (one place), and
    # recorded histories know the activity by this name.
    @activity.defn(name="price_order")
    async def priced_order(self, req: PriceOrder) -> PricedOrder:
        """The lines and totals the API fixed when it accepted the order."""
        async with self._sessionmaker() as session:
            order = await order_records.get_order(session, req.order_id)
            if order is None:
                raise order_not_found(req.order_id)
            if order.total is None or any(i.unit_price is None for i in order.items):
                raise ApplicationError(
                    f"order {order.id} was never priced",
                    type=errors.INVALID_ORDER,
                    non_retryable=True,
                )
            lines = [
                PricedLine(sku=i.sku, quantity=i.quantity, unit_price=i.unit_price or 0)
                for i in order.items
            ]
            totals = Totals(
                subtotal=order.subtotal or 0,
                discount=order.discount or 0,
                shipping=order.shipping or 0,
                total=order.total,
                currency=order.currency,
            )
            return PricedOrder(order_id=order.id, lines=lines, totals=totals)

    @activity.defn
    async def record_status(self, change: OrderStatusChange) -> StatusRecorded:
        """Status and its event in one transaction; the event's dedupe key makes retries no-ops."""
        async with self._sessionmaker.begin() as session:
            order = await locked_order(session, change.order_id)
            event_id, webhook_url = await order_records.record_status(
                session,
                order,
                change.status,
                change.event_type,
                change.detail,
                change.failure_reason,
            )
        log.info(
            "order status recorded",
            extra={
                "order_id": change.order_id,
                "status": change.status.value,
                "event": change.event_type,
            },
        )
        return StatusRecorded(event_id=event_id, notify_merchant=bool(webhook_url))

    @activity.defn
    async def record_order_refunded(self, change: OrderRefunded) -> None:
        """The order ends ``refunded``: its refund (posted once, with the order's key) and
        the status with its event."""
        async with self._sessionmaker.begin() as session:
            order = await locked_order(session, change.order_id)
            await order_records.record_refund(
                session,
                order,
                refund_id=change.refund_id or "",
                amount=change.amount,
                currency=change.currency,
            )
            await order_records.record_status(
                session, order, OrderStatus.REFUNDED, "order.refunded", change.detail, None
            )
        log.info("order refunded", extra={"order_id": change.order_id, "detail": change.detail})

    @activity.defn
    async def refund_notice(self, ref: OrderRef) -> StatusRecorded:
        """The ``order.refunded`` event :meth:`record_order_refunded` wrote, for the merchant
        webhook and the customer's email that announce it."""
        async with self._sessionmaker() as session:
            found = await order_records.status_event(session, ref.order_id, "order.refunded")
        if found is None:
            raise order_not_found(ref.order_id)
        event_id, webhook_url = found
        return StatusRecorded(event_id=event_id, notify_merchant=bool(webhook_url))

    @activity.defn
    async def shipment_plan(self, ref: OrderRef) -> ShipmentPlan:
        """Ship-from and policy of the merchant, ship-to and parcel weight of the order."""
        async with self._sessionmaker() as session:
            found = await order_records.shipping_inputs(session, ref.order_id)
        if found is None:
            raise order_not_found(ref.order_id)
        order, merchant, weights = found
        if not merchant.ship_from:
            raise ApplicationError(
                "the merchant has no ship_from address",
                type=errors.INVALID_ORDER,
                non_retryable=True,
            )
        return ShipmentPlan(
            order_id=order.id,
            ship_from=Address.model_validate(merchant.ship_from),
            ship_to=Address.model_validate(order.shipping_address),
            weight_grams=order_records.parcel_weight(order, weights),
            policy=ShippingPolicy.model_validate(merchant.shipping_policy or {}),
        )

    @activity.defn
    async def record_shipment(self, record: ShipmentRecord) -> None:
        """The order's shipment read model and an event per shipment stage."""
        async with self._sessionmaker.begin() as session:
            order = await locked_order(session, record.order_id)
            await order_records.record_shipment(
                session, order, record.model_dump(mode="json", exclude={"order_id"})
            )
        log.info(
            "shipment recorded",
            extra={"order_id": record.order_id, "shipment_status": record.status},
        )

    @activity.defn
    async def save_tiktok_order(self, req: SaveTikTokOrder) -> OrderRef:
        """The TikTok order as one of ours (``source: tiktok``); saving it again changes nothing."""
        async with self._sessionmaker.begin() as session:
            order_id = await order_records.save_tiktok_order(session, req.merchant_id, req.order)
        log.info(
            "tiktok order saved",
            extra={"order_id": order_id, "tiktok_order_id": req.order.tiktok_order_id},
        )
        return OrderRef(order_id=order_id)
