"""Order repository: placement, reads of the public order, the inbox and outbox rows.

:func:`get_order_public` is the one serialisation of an order: the API answers
with it and the worker sends it as the ``data`` of merchant webhooks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import literal, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    IdempotencyRecord,
    InboxEvent,
    Order,
    OrderEvent,
    OrderItem,
    OutboxMessage,
    Product,
)
from fulfil.models import Address, Customer, OrderSource, OrderStatus
from fulfil.money import Totals
from fulfil.schemas import (
    OrderEventPublic,
    OrderItemPublic,
    OrderPublic,
    OrderTotals,
    PaymentPublic,
    ShipmentPublic,
)

# --- idempotency -----------------------------------------------------------


async def get_idempotency_record(
    session: AsyncSession, merchant_id: str, key: str
) -> IdempotencyRecord | None:
    return await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.merchant_id == merchant_id, IdempotencyRecord.key == key
        )
    )


async def claim_idempotency_key(
    session: AsyncSession, *, merchant_id: str, key: str, request_hash: str, resource_id: str
) -> bool:
    """Insert the record; ``False`` when another request holds the key.

    A concurrent holder that has not committed yet makes this wait for it (the
    unique index), so after ``False`` :func:`get_idempotency_record` sees its row.
    """
    claimed = await session.scalar(
        insert(IdempotencyRecord)
        .values(
            merchant_id=merchant_id, key=key, request_hash=request_hash, resource_id=resource_id
        )
        .on_conflict_do_nothing(index_elements=["merchant_id", "key"])
        .returning(IdempotencyRecord.id)
    )
    return claimed is not None


# --- placement -------------------------------------------------------------


async def insert_storefront_order(
    session: AsyncSession,
    *,
    order_id: str,
    merchant_id: str,
    customer: Customer,
    shipping_address: Address,
    discount_code: str | None,
    payment_method: str,
    lines: Sequence[tuple[Product, int]],
    totals: Totals,
    created_detail: str,
    start: OutboxMessage,
) -> int:
    """The order, its items, its ``order.created`` event and its start message; the outbox id."""
    order = Order(
        id=order_id,
        merchant_id=merchant_id,
        source=OrderSource.STOREFRONT.value,
        status=OrderStatus.PENDING.value,
        customer_email=customer.email,
        customer_name=customer.name,
        shipping_address=shipping_address.model_dump(mode="json"),
        discount_code=discount_code,
        payment_method=payment_method,
        currency=totals.currency,
        subtotal=totals.subtotal,
        discount=totals.discount,
        shipping=totals.shipping,
        total=totals.total,
    )
    session.add(order)
    await session.flush()  # items and events reference the order row
    session.add_all(
        [
            OrderItem(
                order_id=order_id,
                product_id=product.id,
                sku=product.sku,
                quantity=quantity,
                unit_price=product.price,
            )
            for product, quantity in lines
        ]
    )
    session.add(
        OrderEvent(
            order_id=order_id,
            type="order.created",
            status=OrderStatus.PENDING.value,
            detail=created_detail,
            dedupe_key=f"{order_id}:created",
        )
    )
    session.add(start)
    await session.flush()
    return start.id


async def get_order(session: AsyncSession, order_id: str, merchant_id: str | None) -> Order | None:
    """The order row, fresh from the database; ``merchant_id=None`` is the ops view."""
    query = select(Order).where(Order.id == order_id)
    if merchant_id is not None:
        query = query.where(Order.merchant_id == merchant_id)
    return await session.scalar(query.execution_options(populate_existing=True))


async def order_exists(session: AsyncSession, order_id: str) -> bool:
    return (await session.scalar(select(Order.id).where(Order.id == order_id))) is not None


# --- the public order ------------------------------------------------------


def _public(order: Order, events: Sequence[OrderEvent]) -> OrderPublic:
    return OrderPublic(
        order_id=order.id,
        source=OrderSource(order.source),
        external_id=order.external_id,
        status=OrderStatus(order.status),
        items=[
            OrderItemPublic(sku=i.sku, quantity=i.quantity, unit_price=i.unit_price)
            for i in order.items
        ],
        totals=OrderTotals(
            subtotal=order.subtotal,
            discount=order.discount,
            shipping=order.shipping,
            total=order.total,
            currency=order.currency,
        ),
        payment=(
            PaymentPublic(status=order.payment_status, payment_intent_id=order.payment_intent_id)
            if order.payment_intent_id
            else None
        ),
        shipment=ShipmentPublic.from_record(order.shipment) if order.shipment else None,
        payout_id=order.payout_id,
        created_at=order.created_at,
        events=[OrderEventPublic(at=e.at, type=e.type, detail=e.detail or "") for e in events],
    )


async def _events_by_order(
    session: AsyncSession, order_ids: Sequence[str]
) -> dict[str, list[OrderEvent]]:
    grouped: dict[str, list[OrderEvent]] = defaultdict(list)
    if not order_ids:
        return grouped
    rows = await session.scalars(
        select(OrderEvent)
        .where(OrderEvent.order_id.in_(order_ids))
        .order_by(OrderEvent.at, OrderEvent.id)
        .execution_options(populate_existing=True)
    )
    for event in rows:
        grouped[event.order_id].append(event)
    return grouped


async def get_order_public(
    session: AsyncSession, order_id: str, merchant_id: str | None
) -> OrderPublic | None:
    """The order as the API and merchant webhooks show it; ``None`` if absent or not the merchant's.

    ``merchant_id=None`` reads any merchant's order (ops, the worker).
    """
    order = await get_order(session, order_id, merchant_id)
    if order is None:
        return None
    events = await _events_by_order(session, [order.id])
    return _public(order, events[order.id])


async def get_order_cursor(
    session: AsyncSession, order_id: str, merchant_id: str | None
) -> tuple[datetime, str] | None:
    """The sort key of an order, for ``starting_after``."""
    query = select(Order.created_at, Order.id).where(Order.id == order_id)
    if merchant_id is not None:
        query = query.where(Order.merchant_id == merchant_id)
    row = (await session.execute(query)).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def list_orders_public(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    status: OrderStatus | None = None,
    source: OrderSource | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 20,
) -> tuple[list[OrderPublic], bool]:
    """(page, has_more), newest first; ``after`` comes from :func:`get_order_cursor`."""
    query = select(Order).order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    if merchant_id is not None:
        query = query.where(Order.merchant_id == merchant_id)
    if status is not None:
        query = query.where(Order.status == status.value)
    if source is not None:
        query = query.where(Order.source == source.value)
    if after is not None:
        query = query.where(
            tuple_(Order.created_at, Order.id) < tuple_(literal(after[0]), literal(after[1]))
        )
    orders = list(await session.scalars(query.execution_options(populate_existing=True)))
    has_more = len(orders) > limit
    orders = orders[:limit]
    events = await _events_by_order(session, [o.id for o in orders])
    return [_public(o, events[o.id]) for o in orders], has_more


# --- inbox and outbox ------------------------------------------------------


async def record_inbox_event(
    session: AsyncSession, *, provider: str, event_id: str, event_type: str, payload: dict[str, Any]
) -> bool:
    """Record a verified webhook; ``False`` when this event was recorded before (a redelivery)."""
    inserted = await session.scalar(
        insert(InboxEvent)
        .values(provider=provider, event_id=event_id, event_type=event_type, payload=payload)
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(InboxEvent.id)
    )
    return inserted is not None


async def add_outbox_message(session: AsyncSession, message: OutboxMessage) -> int:
    session.add(message)
    await session.flush()
    return message.id


async def pending_outbox_ids(session: AsyncSession, workflow_id: str) -> list[int]:
    """Starts and signals for this workflow not delivered yet, oldest first."""
    rows = await session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.workflow_id == workflow_id, OutboxMessage.dispatched_at.is_(None))
        .order_by(OutboxMessage.id)
    )
    return list(rows)


async def order_id_by_tracking_number(session: AsyncSession, tracking_number: str) -> str | None:
    """The order whose label carries this tracking number (newest if ever reused)."""
    return await session.scalar(
        select(Order.id)
        .where(Order.tracking_number == tracking_number)
        .order_by(Order.created_at.desc())
        .limit(1)
    )
