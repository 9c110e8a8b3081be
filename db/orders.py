"""Order repository: placement with its idempotency record, and reads of the public order.

:func:`get_order_public` is the one serialisation of an order: the API answers
with it and the worker sends it as the ``data`` of merchant webhooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, literal, select, text, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    IdempotencyRecord,
    Order,
    OrderEvent,
    OrderItem,
    OutboxMessage,
    Product,
)
from fulfil.enums import OrderSource, OrderStatus
from fulfil.ids import order_event_key
from fulfil.messages.common import Address, Customer
from fulfil.money import Totals
from fulfil.views import OrderPublic, ShipmentPublic

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
            dedupe_key=order_event_key(order_id, "created"),
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


async def get_event(session: AsyncSession, event_id: int) -> OrderEvent | None:
    return await session.get(OrderEvent, event_id)


async def order_exists(session: AsyncSession, order_id: str) -> bool:
    return (await session.scalar(select(Order.id).where(Order.id == order_id))) is not None


# --- the public order ------------------------------------------------------
# One statement per read: the order's columns with its items and events aggregated as JSON
# by PostgreSQL (a GET is one round trip, a page of 100 orders too).

_ITEMS = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_object(
                        "sku",
                        OrderItem.sku,
                        "quantity",
                        OrderItem.quantity,
                        "unit_price",
                        OrderItem.unit_price,
                    ),
                    OrderItem.id,
                )
            ),
            text("'[]'::json"),
        )
    )
    .where(OrderItem.order_id == Order.id)
    .correlate(Order)
    .scalar_subquery()
)
_EVENTS = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_object(
                        "at",
                        OrderEvent.at,
                        "type",
                        OrderEvent.type,
                        "detail",
                        func.coalesce(OrderEvent.detail, ""),
                    ),
                    OrderEvent.at,
                    OrderEvent.id,
                )
            ),
            text("'[]'::json"),
        )
    )
    .where(OrderEvent.order_id == Order.id)
    .correlate(Order)
    .scalar_subquery()
)
_PUBLIC_COLUMNS = (
    Order.id,
    Order.source,
    Order.external_id,
    Order.status,
    Order.subtotal,
    Order.discount,
    Order.shipping,
    Order.total,
    Order.currency,
    Order.payment_status,
    Order.payment_intent_id,
    Order.shipment,
    Order.payout_id,
    Order.created_at,
    _ITEMS.label("items"),
    _EVENTS.label("events"),
)


def _public(row: Row[Any]) -> OrderPublic:
    return OrderPublic.model_validate(
        {
            "order_id": row.id,
            "source": row.source,
            "external_id": row.external_id,
            "status": row.status,
            "items": row.items,
            "totals": {
                "subtotal": row.subtotal,
                "discount": row.discount,
                "shipping": row.shipping,
                "total": row.total,
                "currency": row.currency,
            },
            "payment": (
                {"status": row.payment_status, "payment_intent_id": row.payment_intent_id}
                if row.payment_intent_id
                else None
            ),
            "shipment": ShipmentPublic.from_record(row.shipment) if row.shipment else None,
            "payout_id": row.payout_id,
            "created_at": row.created_at,
            "events": row.events,
        }
    )


async def get_order_public(
    session: AsyncSession, order_id: str, merchant_id: str | None
) -> OrderPublic | None:
    """The order as the API and merchant webhooks show it; ``None`` if absent or not the merchant's.

    ``merchant_id=None`` reads any merchant's order (ops, the worker).
    """
    query = select(*_PUBLIC_COLUMNS).where(Order.id == order_id)
    if merchant_id is not None:
        query = query.where(Order.merchant_id == merchant_id)
    row = (await session.execute(query)).one_or_none()
    return _public(row) if row is not None else None


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
    query = (
        select(*_PUBLIC_COLUMNS).order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    )
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
    rows = (await session.execute(query)).all()
    return [_public(row) for row in rows[:limit]], len(rows) > limit


async def order_id_by_tracking_number(session: AsyncSession, tracking_number: str) -> str | None:
    """The order whose label carries this tracking number (newest if ever reused)."""
    return await session.scalar(
        select(Order.id)
        .where(Order.tracking_number == tracking_number)
        .order_by(Order.created_at.desc())
        .limit(1)
    )
