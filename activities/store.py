"""PostgreSQL activities: pricing, stock, order status and events, payments, the ledger.

Each one is idempotent: retried after a crash it finds its own effect (a
reservation row, an event's dedupe key, a ledger posting key) and does not
repeat it.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.models import (
    Discount,
    LedgerEntry,
    Merchant,
    Order,
    OrderEvent,
    OrderItem,
    Product,
    StockReservation,
)
from fulfil import errors
from fulfil.ids import new_id
from fulfil.models import (
    Address,
    OrderRef,
    OrderStatusChange,
    PaymentRecord,
    PricedOrder,
    PriceOrder,
    RefundRecord,
    SaveTikTokOrder,
    ShipmentPlan,
    ShipmentRecord,
    ShippingPolicy,
    StatusRecorded,
)
from fulfil.money import DiscountRule, PricedLine, price

log = logging.getLogger(__name__)

DEFAULT_ITEM_WEIGHT_GRAMS = 500


async def _order(session: AsyncSession, order_id: str, *, lock: bool = False) -> Order:
    query = select(Order).where(Order.id == order_id)
    if lock:
        query = query.with_for_update()
    order = await session.scalar(query)
    if order is None:
        raise ApplicationError(
            f"order {order_id} not found", type=errors.ORDER_NOT_FOUND, non_retryable=True
        )
    return order


async def _post(
    session: AsyncSession,
    posting_key: str,
    legs: list[tuple[str, int]],
    *,
    currency: str,
    order_id: str | None = None,
    payout_id: str | None = None,
    memo: str = "",
) -> None:
    """One balanced double-entry posting; posting it again is a no-op."""
    if sum(amount for _, amount in legs) != 0:
        raise ValueError(f"posting {posting_key} does not balance")
    await session.execute(
        insert(LedgerEntry)
        .values(
            [
                {
                    "posting_key": posting_key,
                    "order_id": order_id,
                    "payout_id": payout_id,
                    "account": account,
                    "amount": amount,
                    "currency": currency,
                    "memo": memo,
                }
                for account, amount in legs
            ]
        )
        .on_conflict_do_nothing(index_elements=["posting_key", "account"])
    )


class StoreActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def price_order(self, req: PriceOrder) -> PricedOrder:
        """Unit prices from the catalogue, the discount, flat shipping; stored on the order."""
        async with self._sessionmaker.begin() as session:
            order = await _order(session, req.order_id, lock=True)
            if order.total is not None and all(i.unit_price is not None for i in order.items):
                lines = [
                    PricedLine(sku=i.sku, quantity=i.quantity, unit_price=i.unit_price or 0)
                    for i in order.items
                ]
                totals = price(lines, None, 0, order.currency).model_copy(
                    update={
                        "discount": order.discount or 0,
                        "shipping": order.shipping or 0,
                        "total": order.total,
                    }
                )
                return PricedOrder(order_id=order.id, lines=lines, totals=totals)
            products = {
                p.sku: p
                for p in await session.scalars(
                    select(Product).where(
                        Product.merchant_id == order.merchant_id,
                        Product.sku.in_([i.sku for i in order.items]),
                    )
                )
            }
            lines = []
            for item in order.items:
                product = products.get(item.sku)
                if product is None:
                    raise ApplicationError(
                        f"unknown sku {item.sku}", type=errors.UNKNOWN_PRODUCT, non_retryable=True
                    )
                item.product_id = product.id
                item.unit_price = product.price
                lines.append(
                    PricedLine(sku=item.sku, quantity=item.quantity, unit_price=product.price)
                )
            rule = None
            if order.discount_code:
                discount = await session.scalar(
                    select(Discount).where(
                        Discount.merchant_id == order.merchant_id,
                        Discount.code == order.discount_code,
                    )
                )
                if discount is not None:
                    rule = DiscountRule(
                        code=discount.code,
                        percent_off=discount.percent_off,
                        amount_off=discount.amount_off,
                    )
            totals = price(lines, rule, req.shipping, order.currency)
            order.subtotal, order.discount = totals.subtotal, totals.discount
            order.shipping, order.total = totals.shipping, totals.total
            return PricedOrder(order_id=order.id, lines=lines, totals=totals)

    @activity.defn
    async def reserve_stock(self, ref: OrderRef) -> None:
        """Reserve every line atomically, or none: no oversell under any concurrency."""
        async with self._sessionmaker.begin() as session:
            order = await _order(session, ref.order_id, lock=True)
            existing = await session.scalar(
                select(StockReservation.id).where(StockReservation.order_id == order.id).limit(1)
            )
            if existing is not None:
                return
            quantities: dict[str, int] = {}
            for item in order.items:
                quantities[item.sku] = quantities.get(item.sku, 0) + item.quantity
            # A stable lock order (by sku) so two orders never deadlock each other.
            for sku in sorted(quantities):
                qty = quantities[sku]
                product_id = await session.scalar(
                    update(Product)
                    .where(
                        Product.merchant_id == order.merchant_id,
                        Product.sku == sku,
                        Product.stock - Product.reserved >= qty,
                    )
                    .values(reserved=Product.reserved + qty)
                    .returning(Product.id)
                )
                if product_id is None:
                    raise ApplicationError(
                        f"not enough stock for {sku}",
                        sku,
                        type=errors.OUT_OF_STOCK,
                        non_retryable=True,
                    )
                session.add(
                    StockReservation(
                        order_id=order.id, product_id=product_id, quantity=qty, state="reserved"
                    )
                )
        log.info("stock reserved", extra={"order_id": ref.order_id})

    @activity.defn
    async def commit_stock(self, ref: OrderRef) -> None:
        """The order is paid: reserved units leave the stock."""
        async with self._sessionmaker.begin() as session:
            rows = await session.scalars(
                select(StockReservation)
                .where(
                    StockReservation.order_id == ref.order_id, StockReservation.state == "reserved"
                )
                .with_for_update()
            )
            for r in rows:
                await session.execute(
                    update(Product)
                    .where(Product.id == r.product_id)
                    .values(
                        stock=Product.stock - r.quantity, reserved=Product.reserved - r.quantity
                    )
                )
                r.state = "committed"

    @activity.defn
    async def release_stock(self, ref: OrderRef) -> None:
        """Compensation: reserved units become available, committed units go back to stock."""
        async with self._sessionmaker.begin() as session:
            rows = await session.scalars(
                select(StockReservation)
                .where(
                    StockReservation.order_id == ref.order_id,
                    StockReservation.state.in_(["reserved", "committed"]),
                )
                .with_for_update()
            )
            for r in rows:
                if r.state == "reserved":
                    values = {"reserved": Product.reserved - r.quantity}
                    r.state = "released"
                else:
                    values = {"stock": Product.stock + r.quantity}
                    r.state = "restocked"
                await session.execute(
                    update(Product).where(Product.id == r.product_id).values(values)
                )

    @activity.defn
    async def record_status(self, change: OrderStatusChange) -> StatusRecorded:
        """Status and its event in one transaction; the event's dedupe key makes retries no-ops."""
        async with self._sessionmaker.begin() as session:
            order = await _order(session, change.order_id, lock=True)
            dedupe_key = f"{change.order_id}:{change.event_type}"
            event_id = await session.scalar(
                insert(OrderEvent)
                .values(
                    order_id=change.order_id,
                    type=change.event_type,
                    status=change.status.value,
                    detail=change.detail,
                    dedupe_key=dedupe_key,
                )
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(OrderEvent.id)
            )
            if event_id is None:
                event_id = await session.scalar(
                    select(OrderEvent.id).where(OrderEvent.dedupe_key == dedupe_key)
                )
            order.status = change.status.value
            if change.failure_reason is not None:
                order.failure_reason = change.failure_reason
            webhook_url = await session.scalar(
                select(Merchant.webhook_url).where(Merchant.id == order.merchant_id)
            )
        log.info(
            "order status recorded",
            extra={
                "order_id": change.order_id,
                "status": change.status.value,
                "event": change.event_type,
            },
        )
        return StatusRecorded(event_id=event_id or 0, notify_merchant=bool(webhook_url))

    @activity.defn
    async def record_payment(self, payment: PaymentRecord) -> None:
        """Store the provider ids; a succeeded payment is posted to the ledger once."""
        async with self._sessionmaker.begin() as session:
            order = await _order(session, payment.order_id, lock=True)
            order.payment_intent_id = payment.payment_intent_id
            order.payment_status = payment.status
            if payment.charge_id:
                order.charge_id = payment.charge_id
            if payment.status == "succeeded":
                await _post(
                    session,
                    f"order:{order.id}:charge",
                    [("processor_balance", payment.amount), ("customer_payments", -payment.amount)],
                    currency=payment.currency,
                    order_id=order.id,
                    memo=f"charge {payment.payment_intent_id}",
                )

    @activity.defn
    async def record_refund(self, record: RefundRecord) -> None:
        async with self._sessionmaker.begin() as session:
            order = await _order(session, record.order_id, lock=True)
            order.refund_id = record.refund.refund_id
            order.payment_status = "refunded"
            await _post(
                session,
                f"order:{order.id}:refund",
                [
                    ("customer_payments", record.refund.amount),
                    ("processor_balance", -record.refund.amount),
                ],
                currency=record.currency,
                order_id=order.id,
                memo=f"refund {record.refund.refund_id}",
            )

    @activity.defn
    async def shipment_plan(self, ref: OrderRef) -> ShipmentPlan:
        """Ship-from and policy of the merchant, ship-to and parcel weight of the order."""
        async with self._sessionmaker() as session:
            order = await _order(session, ref.order_id)
            merchant = await session.get(Merchant, order.merchant_id)
            if merchant is None or not merchant.ship_from:
                raise ApplicationError(
                    "the merchant has no ship_from address",
                    type=errors.INVALID_ORDER,
                    non_retryable=True,
                )
            weights = {
                p.sku: p.weight_grams
                for p in await session.scalars(
                    select(Product).where(
                        Product.merchant_id == order.merchant_id,
                        Product.sku.in_([i.sku for i in order.items]),
                    )
                )
            }
            weight = sum(
                (weights.get(i.sku) or DEFAULT_ITEM_WEIGHT_GRAMS) * i.quantity for i in order.items
            )
            return ShipmentPlan(
                order_id=order.id,
                ship_from=Address.model_validate(merchant.ship_from),
                ship_to=Address.model_validate(order.shipping_address),
                weight_grams=weight,
                policy=ShippingPolicy.model_validate(merchant.shipping_policy or {}),
            )

    @activity.defn
    async def record_shipment(self, record: ShipmentRecord) -> None:
        """The order's shipment read model and an event per shipment stage."""
        async with self._sessionmaker.begin() as session:
            order = await _order(session, record.order_id, lock=True)
            order.shipment = {
                "carrier": record.carrier,
                "service": record.service,
                "tracking_number": record.tracking_number,
                "label_url": record.label_url,
                "status": record.status,
                "transaction_id": record.transaction_id,
                "detail": record.detail,
            }
            if record.tracking_number:
                order.tracking_number = record.tracking_number
            await session.execute(
                insert(OrderEvent)
                .values(
                    order_id=order.id,
                    type=f"shipment.{record.status}",
                    status=order.status,
                    detail=record.detail,
                    dedupe_key=f"{order.id}:shipment.{record.status}",
                )
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
            )
        log.info(
            "shipment recorded",
            extra={"order_id": record.order_id, "shipment_status": record.status},
        )

    @activity.defn
    async def save_tiktok_order(self, req: SaveTikTokOrder) -> OrderRef:
        """The TikTok order as one of ours (``source: tiktok``); saving it again changes nothing."""
        tt = req.order
        async with self._sessionmaker.begin() as session:
            existing = await session.scalar(
                select(Order.id).where(
                    Order.merchant_id == req.merchant_id,
                    Order.source == "tiktok",
                    Order.external_id == tt.tiktok_order_id,
                )
            )
            if existing is not None:
                return OrderRef(order_id=existing)
            products = {
                p.sku: p.id
                for p in await session.scalars(
                    select(Product).where(
                        Product.merchant_id == req.merchant_id,
                        Product.sku.in_([line.sku for line in tt.lines]),
                    )
                )
            }
            order_id = new_id("ord")
            inserted = await session.scalar(
                insert(Order)
                .values(
                    id=order_id,
                    merchant_id=req.merchant_id,
                    source="tiktok",
                    external_id=tt.tiktok_order_id,
                    status="pending",
                    customer_email=tt.recipient.email or "",
                    customer_name=tt.recipient.name,
                    shipping_address=tt.recipient.model_dump(mode="json", exclude_none=True),
                    currency=tt.currency,
                    subtotal=tt.subtotal,
                    discount=max(tt.subtotal + tt.shipping - tt.total, 0),
                    shipping=tt.shipping,
                    total=tt.total,
                    payment_status="paid_on_tiktok",
                )
                .on_conflict_do_nothing(index_elements=["merchant_id", "source", "external_id"])
                .returning(Order.id)
            )
            if inserted is None:  # a concurrent attempt won
                won = await session.scalar(
                    select(Order.id).where(
                        Order.merchant_id == req.merchant_id,
                        Order.source == "tiktok",
                        Order.external_id == tt.tiktok_order_id,
                    )
                )
                return OrderRef(order_id=won or order_id)
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
                    status="pending",
                    detail=f"TikTok Shop order {tt.tiktok_order_id}",
                    dedupe_key=f"{order_id}:created",
                )
            )
        log.info(
            "tiktok order saved",
            extra={"order_id": order_id, "tiktok_order_id": tt.tiktok_order_id},
        )
        return OrderRef(order_id=order_id)
