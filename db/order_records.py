"""What order workflows write and read through their activities: status and events,
payment and refund ids with their ledger postings, the shipment read model, TikTok imports.

Every write is keyed by business ids (event dedupe keys, posting keys, the
TikTok order's unique external id) so a retried activity changes nothing.
The public view of an order is :mod:`db.orders`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import ledger
from db.models import Merchant, Order, OrderEvent, OrderItem, Product
from fulfil.enums import FailureReason, OrderSource, OrderStatus, PaymentStatus
from fulfil.ids import charge_posting_key, new_id, order_event_key, refund_posting_key
from fulfil.messages.tiktok import TikTokOrder

DEFAULT_ITEM_WEIGHT_GRAMS = 500


async def get_order(session: AsyncSession, order_id: str) -> Order | None:
    return await session.scalar(select(Order).where(Order.id == order_id))


async def lock_order(session: AsyncSession, order_id: str) -> Order | None:
    """The order row, locked until the transaction ends: its writers take turns."""
    return await session.scalar(select(Order).where(Order.id == order_id).with_for_update())


async def add_event(
    session: AsyncSession, order: Order, event_type: str, status: str, detail: str, key: str
) -> int:
    """An order event, once per ``key``; the event's id (also when it existed)."""
    event_id = await session.scalar(
        insert(OrderEvent)
        .values(order_id=order.id, type=event_type, status=status, detail=detail, dedupe_key=key)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OrderEvent.id)
    )
    if event_id is None:
        event_id = await session.scalar(select(OrderEvent.id).where(OrderEvent.dedupe_key == key))
    return int(event_id or 0)


async def record_status(
    session: AsyncSession,
    order: Order,
    status: OrderStatus,
    event_type: str,
    detail: str,
    failure_reason: FailureReason | None,
) -> tuple[int, str | None]:
    """Status and its event; returns (event id, the merchant's webhook URL or None)."""
    event_id = await add_event(
        session, order, event_type, status.value, detail, order_event_key(order.id, event_type)
    )
    order.status = status.value
    if failure_reason is not None:
        order.failure_reason = failure_reason.value
    webhook_url = await session.scalar(
        select(Merchant.webhook_url).where(Merchant.id == order.merchant_id)
    )
    return event_id, webhook_url


async def status_event(
    session: AsyncSession, order_id: str, event_type: str
) -> tuple[int, str | None] | None:
    """The order's ``event_type`` event as :func:`record_status` recorded it: (event id, the
    merchant's webhook URL or None); None when there is none."""
    row = (
        await session.execute(
            select(OrderEvent.id, Merchant.webhook_url)
            .join(Order, Order.id == OrderEvent.order_id)
            .join(Merchant, Merchant.id == Order.merchant_id)
            .where(OrderEvent.dedupe_key == order_event_key(order_id, event_type))
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def record_payment(
    session: AsyncSession,
    order: Order,
    *,
    payment_intent_id: str,
    status: str,
    charge_id: str | None,
    amount: int,
    currency: str,
) -> None:
    """The provider's ids; a succeeded payment is posted to the ledger once."""
    order.payment_intent_id = payment_intent_id
    order.payment_status = status
    if charge_id:
        order.charge_id = charge_id
    if status == PaymentStatus.SUCCEEDED:
        await ledger.post(
            session,
            charge_posting_key(order.id),
            [(ledger.PROCESSOR_BALANCE, amount), (ledger.CUSTOMER_PAYMENTS, -amount)],
            currency=currency,
            order_id=order.id,
            memo=f"charge {payment_intent_id}",
        )


async def record_refund(
    session: AsyncSession, order: Order, *, refund_id: str, amount: int, currency: str
) -> None:
    order.refund_id = refund_id
    order.payment_status = PaymentStatus.REFUNDED.value
    await ledger.post(
        session,
        refund_posting_key(order.id),
        [(ledger.CUSTOMER_PAYMENTS, amount), (ledger.PROCESSOR_BALANCE, -amount)],
        currency=currency,
        order_id=order.id,
        memo=f"refund {refund_id}",
    )


async def record_shipment(session: AsyncSession, order: Order, record: dict[str, Any]) -> None:
    """The order's ``shipment`` read model, and an event per shipment stage."""
    order.shipment = record
    if record.get("tracking_number"):
        order.tracking_number = record["tracking_number"]
    event_type = f"shipment.{record['status']}"
    await add_event(
        session,
        order,
        event_type,
        order.status,
        record.get("detail") or "",
        order_event_key(order.id, event_type),
    )


async def shipping_inputs(
    session: AsyncSession, order_id: str
) -> tuple[Order, Merchant, dict[str, int | None]] | None:
    """The order, its merchant and the weight (grams) of each of its skus."""
    order = await get_order(session, order_id)
    if order is None:
        return None
    merchant = await session.get(Merchant, order.merchant_id)
    if merchant is None:
        return None
    weights = {
        p.sku: p.weight_grams
        for p in await session.scalars(
            select(Product).where(
                Product.merchant_id == order.merchant_id,
                Product.sku.in_([i.sku for i in order.items]),
            )
        )
    }
    return order, merchant, weights


def parcel_weight(order: Order, weights: dict[str, int | None]) -> int:
    return sum((weights.get(i.sku) or DEFAULT_ITEM_WEIGHT_GRAMS) * i.quantity for i in order.items)


async def _tiktok_order_id(session: AsyncSession, merchant_id: str, external_id: str) -> str | None:
    return await session.scalar(
        select(Order.id).where(
            Order.merchant_id == merchant_id,
            Order.source == OrderSource.TIKTOK.value,
            Order.external_id == external_id,
        )
    )


async def save_tiktok_order(session: AsyncSession, merchant_id: str, tt: TikTokOrder) -> str:
    """The TikTok order as one of ours (``source: tiktok``); saving it again changes nothing."""
    existing = await _tiktok_order_id(session, merchant_id, tt.tiktok_order_id)
    if existing is not None:
        return existing
    products = {
        p.sku: p.id
        for p in await session.scalars(
            select(Product).where(
                Product.merchant_id == merchant_id,
                Product.sku.in_([line.sku for line in tt.lines]),
            )
        )
    }
    order_id = new_id("ord")
    inserted = await session.scalar(
        insert(Order)
        .values(
            id=order_id,
            merchant_id=merchant_id,
            source=OrderSource.TIKTOK.value,
            external_id=tt.tiktok_order_id,
            status=OrderStatus.PENDING.value,
            customer_email=tt.recipient.email or "",
            customer_name=tt.recipient.name,
            shipping_address=tt.recipient.model_dump(mode="json", exclude_none=True),
            currency=tt.currency,
            subtotal=tt.subtotal,
            discount=max(tt.subtotal + tt.shipping - tt.total, 0),
            shipping=tt.shipping,
            total=tt.total,
            payment_status=PaymentStatus.PAID_ON_TIKTOK.value,
        )
        .on_conflict_do_nothing(index_elements=["merchant_id", "source", "external_id"])
        .returning(Order.id)
    )
    if inserted is None:  # a concurrent attempt won
        return await _tiktok_order_id(session, merchant_id, tt.tiktok_order_id) or order_id
    session.add_all(
        OrderItem(
            order_id=order_id,
            product_id=products.get(line.sku),
            sku=line.sku,
            quantity=line.quantity,
            unit_price=line.unit_price,
        )
        for line in tt.lines
    )
    session.add(
        OrderEvent(
            order_id=order_id,
            type="order.created",
            status=OrderStatus.PENDING.value,
            detail=f"TikTok Shop order {tt.tiktok_order_id}",
            dedupe_key=order_event_key(order_id, "created"),
        )
    )
    return order_id
