"""Storefront order intake: validate against the catalogue, price, write order + outbox at once.

Everything here happens in the request's one transaction: the idempotency
record, the order with its items and ``order.created`` event, and the outbox
row that starts ``OrderPlacement``. The stock check is advisory (a friendly
409 now); the workflow's reservation is the atomic one. An order the merchant
can never ship (no ship-from address) is refused here, before any money moves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from http import HTTPStatus

from sqlalchemy.ext.asyncio import AsyncSession

from api.problems import Problem, conflict, invalid
from api.schemas import FieldError, OrderCreate
from db import catalog, inbox, orders, outbox
from db.models import IdempotencyRecord, Merchant, OutboxMessage, Product
from fulfil.enums import OrderStatus
from fulfil.ids import new_id, order_workflow_id
from fulfil.messages.orders import OrderConfig, OrderPayout, OrderPlacementInput
from fulfil.messages.shipment import ShipmentConfig
from fulfil.money import DiscountRule, PricedLine, Totals, format_money, price
from fulfil.settings import Settings
from fulfil.temporal import MERCHANT_ID, ORDER_ID, ORDER_STATUS
from workflows.names import workflow_name
from workflows.order_placement import OrderPlacement


@dataclass(frozen=True)
class PlacedOrder:
    order_id: str
    status: OrderStatus
    created: bool  # False: an idempotent replay of an earlier request
    outbox_ids: tuple[int, ...]  # to dispatch after the commit


@dataclass(frozen=True)
class _Line:
    sku: str
    quantity: int
    index: int  # of the sku's first line in the request, for error fields


def request_hash(body: OrderCreate) -> str:
    """sha256 of the canonical JSON of the validated body."""
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def merge_lines(body: OrderCreate) -> list[_Line]:
    """One line per sku (quantities of repeated skus added up), in first-seen order."""
    merged: dict[str, _Line] = {}
    for index, item in enumerate(body.items):
        seen = merged.get(item.sku)
        if seen is None:
            merged[item.sku] = _Line(item.sku, item.quantity, index)
        else:
            merged[item.sku] = _Line(item.sku, seen.quantity + item.quantity, seen.index)
    return list(merged.values())


async def place_order(
    session: AsyncSession,
    *,
    merchant: Merchant,
    idempotency_key: str,
    body: OrderCreate,
    settings: Settings,
) -> PlacedOrder:
    merchant_id = merchant.id
    digest = request_hash(body)
    record = await orders.get_idempotency_record(session, merchant_id, idempotency_key)
    if record is not None:
        return await _replay(session, record, digest)
    if not merchant.ship_from:
        raise conflict(
            "merchant-cannot-ship",
            "This merchant has no ship-from address, so no order can be shipped and none is "
            "taken. Set it with PATCH /api/v1/merchants/me.",
            [FieldError(field="ship_from", message="the merchant has no ship-from address")],
        )

    lines = merge_lines(body)
    products = await catalog.get_products_by_sku(session, merchant_id, [x.sku for x in lines])
    unknown = [
        FieldError(field=f"items[{x.index}].sku", message=f"unknown sku {x.sku!r}")
        for x in lines
        if x.sku not in products
    ]
    if unknown:
        raise invalid(unknown, detail="The order names products the catalogue does not have.")

    currency = products[lines[0].sku].currency
    mixed = [
        FieldError(
            field=f"items[{x.index}].sku",
            message=f"priced in {products[x.sku].currency}, the order is in {currency}",
        )
        for x in lines
        if products[x.sku].currency != currency
    ]
    if mixed:
        raise invalid(mixed, detail="All items of an order must be priced in one currency.")

    rule: DiscountRule | None = None
    discount_code: str | None = None
    if body.discount_code is not None:
        discount = await catalog.get_discount(session, merchant_id, body.discount_code.upper())
        if discount is None:
            raise invalid(
                [FieldError(field="discount_code", message="unknown discount code")],
                detail=f"Unknown discount code {body.discount_code!r}.",
            )
        if discount.amount_off is not None and discount.currency not in (None, currency):
            raise invalid(
                [
                    FieldError(
                        field="discount_code",
                        message=f"applies to {discount.currency} orders, this one is {currency}",
                    )
                ]
            )
        discount_code = discount.code
        rule = DiscountRule(
            code=discount.code, percent_off=discount.percent_off, amount_off=discount.amount_off
        )

    short = [
        FieldError(
            field=f"items[{x.index}].quantity",
            message=f"{x.quantity} requested, {_available(products[x.sku])} available",
        )
        for x in lines
        if x.quantity > _available(products[x.sku])
    ]
    if short:
        raise conflict("insufficient-stock", "Not enough stock for this order.", short)

    priced = [
        PricedLine(sku=x.sku, quantity=x.quantity, unit_price=products[x.sku].price) for x in lines
    ]
    totals = price(priced, rule, settings.flat_shipping_amount, currency)

    order_id = new_id("ord")
    if not await orders.claim_idempotency_key(
        session,
        merchant_id=merchant_id,
        key=idempotency_key,
        request_hash=digest,
        resource_id=order_id,
    ):
        # A concurrent request with this key committed first: answer as it did.
        record = await orders.get_idempotency_record(session, merchant_id, idempotency_key)
        if record is None:  # it rolled back between our insert and this read
            raise conflict(
                "idempotency-key-in-use",
                "Another request with this Idempotency-Key is in progress; retry.",
            )
        return await _replay(session, record, digest)

    units = sum(x.quantity for x in lines)
    start = start_order_placement(
        settings,
        order_id=order_id,
        merchant_id=merchant_id,
        payment_method=body.payment_method,
        units=units,
        totals=totals,
        stripe_account=merchant.stripe_account,
        merchant_name=merchant.name,
    )
    outbox_id = await orders.insert_storefront_order(
        session,
        order_id=order_id,
        merchant_id=merchant_id,
        customer=body.customer,
        shipping_address=body.shipping_address,
        discount_code=discount_code,
        payment_method=body.payment_method,
        lines=[(products[x.sku], x.quantity) for x in lines],
        totals=totals,
        created_detail=f"Placed on the storefront: {units} items, total "
        f"{format_money(totals.total, currency)}",
        start=start,
    )
    return PlacedOrder(order_id, OrderStatus.PENDING, created=True, outbox_ids=(outbox_id,))


def _available(product: Product) -> int:
    return product.stock - product.reserved


async def _replay(session: AsyncSession, record: IdempotencyRecord, digest: str) -> PlacedOrder:
    if record.request_hash != digest:
        raise Problem(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "This Idempotency-Key was used with a different request body. "
            "Use a new key for a new order.",
            slug="idempotency-key-reused",
            errors=[FieldError(field="Idempotency-Key", message="used with a different body")],
        )
    order = await orders.get_order(session, record.resource_id, record.merchant_id)
    if order is None:  # cannot happen: the record and the order commit together
        raise RuntimeError(f"idempotency record {record.id} names a missing order")
    # A retry also nudges a start that has not reached Temporal yet.
    pending = await inbox.pending_outbox_ids(session, order_workflow_id(order.id))
    return PlacedOrder(
        order.id, OrderStatus(order.status), created=False, outbox_ids=tuple(pending)
    )


def start_order_placement(
    settings: Settings,
    *,
    order_id: str,
    merchant_id: str,
    payment_method: str,
    units: int,
    totals: Totals,
    stripe_account: str | None = None,
    merchant_name: str = "",
) -> OutboxMessage:
    """The row that starts OrderPlacement; a Connect seller's order also gets its payout."""
    payout = None
    if stripe_account:
        payout = OrderPayout(
            payout_id=new_id("pay"),
            stripe_account=stripe_account,
            config=settings.payout_config(),
        )
    inp = OrderPlacementInput(
        payout=payout,
        order_id=order_id,
        merchant_id=merchant_id,
        payment_method=payment_method,
        config=OrderConfig(
            flat_shipping_amount=settings.flat_shipping_amount,
            payment_action_timeout_seconds=settings.payment_action_timeout_seconds,
            shipment=ShipmentConfig.from_settings(settings),
        ),
    )
    return outbox.start_message(
        workflow_name(OrderPlacement.run),
        order_workflow_id(order_id),
        inp.model_dump(mode="json"),
        search_attributes={
            MERCHANT_ID.name: merchant_id,
            ORDER_ID.name: order_id,
            ORDER_STATUS.name: OrderStatus.PENDING.value,
        },
        summary=f"Order {order_id} · {units} item{'' if units == 1 else 's'} · "
        f"{format_money(totals.total, totals.currency)} · {merchant_name}",
        task_queue=settings.task_queue,
    )
