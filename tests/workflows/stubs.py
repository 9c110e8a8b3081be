"""Stand-ins for every activity, registered under the real names, and history recording."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from fulfil import errors
from fulfil.models import (
    Address,
    BuyLabel,
    CancelPayment,
    ChargeRequest,
    ChargeResult,
    CustomerEmail,
    MerchantWebhook,
    OrderRef,
    OrderStatusChange,
    PaymentRecord,
    PricedOrder,
    PriceOrder,
    RateOption,
    RatesQuote,
    RefundRecord,
    RefundRequest,
    RefundResult,
    SaveTikTokOrder,
    ShipmentPlan,
    ShipmentRecord,
    ShippingPolicy,
    ShipTikTokPackage,
    StatusRecorded,
    TikTokLine,
    TikTokOrder,
    TikTokOrderRef,
    TrackingQuery,
    TrackingStage,
    TrackingStatus,
    VoidLabel,
)
from fulfil.models import Label as ShippingLabel
from fulfil.money import PricedLine, Totals

HISTORIES = Path(__file__).parent.parent / "histories"


async def record_histories(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], kind: str, name: str, order_id: str
) -> None:
    """With RECORD_HISTORIES=1, keep this run's history (and its shipment's) for replay."""
    if not os.environ.get("RECORD_HISTORIES"):
        return
    runs = [(kind, handle), ("shipment", env.client.get_workflow_handle(f"shipment-{order_id}"))]
    for folder, run in runs:
        try:
            history = await run.fetch_history()
        except RPCError:
            continue
        (HISTORIES / folder).mkdir(parents=True, exist_ok=True)
        (HISTORIES / folder / f"{name}.json").write_text(history.to_json())


@dataclass
class Shop:
    """Stand-ins for every activity, registered under the real names."""

    charge_status: str = "succeeded"
    decline: bool = False
    out_of_stock: bool = False
    commit_fails: bool = False
    webhook_fails: bool = False
    no_rates: bool = False
    label_refused: bool = False
    void_refused: bool = False
    tiktok_push_fails: bool = False
    # When set, quoting rates waits for it (a slow carrier API).
    quote_gate: asyncio.Event | None = None
    # Successive tracking reads; the last one repeats.
    tracking: list[TrackingStage] = field(
        default_factory=lambda: [TrackingStage.TRANSIT, TrackingStage.DELIVERED]
    )
    shipment_statuses: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Awaitable[Any]]]:
        shop = self

        @activity.defn(name="price_order")
        async def price_order(req: PriceOrder) -> PricedOrder:
            shop.calls.append("price_order")
            line = PricedLine(sku="MUG-1", quantity=2, unit_price=1800)
            return PricedOrder(
                order_id=req.order_id,
                lines=[line],
                totals=Totals(
                    subtotal=3600, discount=360, shipping=req.shipping, total=3740, currency="USD"
                ),
            )

        @activity.defn(name="reserve_stock")
        async def reserve_stock(ref: OrderRef) -> None:
            shop.calls.append("reserve_stock")
            if shop.out_of_stock:
                raise ApplicationError(
                    "not enough stock for MUG-1", type=errors.OUT_OF_STOCK, non_retryable=True
                )

        @activity.defn(name="commit_stock")
        async def commit_stock(ref: OrderRef) -> None:
            shop.calls.append("commit_stock")
            if shop.commit_fails:
                raise ApplicationError(
                    "database constraint", type=errors.INVALID_ORDER, non_retryable=True
                )

        @activity.defn(name="release_stock")
        async def release_stock(ref: OrderRef) -> None:
            shop.calls.append("release_stock")

        @activity.defn(name="record_status")
        async def record_status(change: OrderStatusChange) -> StatusRecorded:
            shop.statuses.append(change.event_type)
            return StatusRecorded(event_id=len(shop.statuses), notify_merchant=True)

        @activity.defn(name="record_payment")
        async def record_payment(payment: PaymentRecord) -> None:
            shop.calls.append(f"record_payment:{payment.status}")

        @activity.defn(name="record_refund")
        async def record_refund(record: RefundRecord) -> None:
            shop.calls.append("record_refund")

        @activity.defn(name="charge")
        async def charge(req: ChargeRequest) -> ChargeResult:
            shop.calls.append("charge")
            if shop.decline:
                raise ApplicationError(
                    "Your card was declined.",
                    "card_declined",
                    type=errors.PAYMENT_DECLINED,
                    non_retryable=True,
                )
            return ChargeResult(payment_intent_id=f"pi_{req.order_id}", status=shop.charge_status)

        @activity.defn(name="refund")
        async def refund(req: RefundRequest) -> RefundResult:
            shop.calls.append("refund")
            return RefundResult(refund_id="re_1", amount=req.amount)

        @activity.defn(name="cancel_payment_intent")
        async def cancel_payment_intent(req: CancelPayment) -> ChargeResult:
            shop.calls.append("cancel_payment_intent")
            return ChargeResult(payment_intent_id=req.payment_intent_id, status="canceled")

        @activity.defn(name="send_customer_email")
        async def send_customer_email(req: CustomerEmail) -> None:
            shop.emails.append(req.kind)

        @activity.defn(name="deliver_merchant_webhook")
        async def deliver_merchant_webhook(req: MerchantWebhook) -> None:
            if shop.webhook_fails:
                raise RuntimeError("merchant endpoint answered 500")

        @activity.defn(name="shipment_plan")
        async def shipment_plan(ref: OrderRef) -> ShipmentPlan:
            address = Address(name="A", street1="1 Main", city="X", zip="1", country="US")
            return ShipmentPlan(
                order_id=ref.order_id,
                ship_from=address,
                ship_to=address,
                weight_grams=700,
                policy=ShippingPolicy(),
            )

        @activity.defn(name="quote_rates")
        async def quote_rates(plan: ShipmentPlan) -> RatesQuote:
            if shop.quote_gate is not None:
                await shop.quote_gate.wait()
            rates = [
                RateOption(
                    rate_id="r1",
                    carrier="USPS",
                    service="Ground",
                    amount=600,
                    currency="USD",
                    estimated_days=5,
                ),
                RateOption(
                    rate_id="r2",
                    carrier="UPS",
                    service="Next Day",
                    amount=3000,
                    currency="USD",
                    estimated_days=1,
                ),
            ]
            return RatesQuote(shipment_id="shp_1", rates=[] if shop.no_rates else rates)

        @activity.defn(name="buy_label")
        async def buy_label(req: BuyLabel) -> ShippingLabel:
            shop.calls.append(f"buy_label:{req.rate.rate_id}")
            if shop.label_refused:
                raise ApplicationError(
                    "label purchase refused: 400", type=errors.LABEL_REFUSED, non_retryable=True
                )
            return ShippingLabel(
                transaction_id="tx_1",
                carrier=req.rate.carrier,
                service=req.rate.service,
                tracking_number="TRACK1",
                amount=req.rate.amount,
                currency=req.rate.currency,
            )

        @activity.defn(name="void_label")
        async def void_label(req: VoidLabel) -> bool:
            shop.calls.append("void_label")
            return not shop.void_refused

        @activity.defn(name="get_tracking")
        async def get_tracking(query: TrackingQuery) -> TrackingStatus:
            stage = shop.tracking.pop(0) if len(shop.tracking) > 1 else shop.tracking[0]
            return TrackingStatus(stage=stage)

        @activity.defn(name="record_shipment")
        async def record_shipment(record: ShipmentRecord) -> None:
            shop.shipment_statuses.append(record.status)

        @activity.defn(name="get_tiktok_order")
        async def get_tiktok_order(ref: TikTokOrderRef) -> TikTokOrder:
            shop.calls.append("get_tiktok_order")
            address = Address(name="B", street1="2 High St", city="Y", zip="2", country="US")
            return TikTokOrder(
                shop_id=ref.shop_id,
                tiktok_order_id=ref.tiktok_order_id,
                status="AWAITING_SHIPMENT",
                currency="USD",
                lines=[TikTokLine(sku="CANDLE-1", quantity=2, unit_price=1500)],
                subtotal=3000,
                shipping=0,
                total=3000,
                recipient=address,
                package_id="pkg_1",
                delivery_option_id="opt_1",
            )

        @activity.defn(name="save_tiktok_order")
        async def save_tiktok_order(req: SaveTikTokOrder) -> OrderRef:
            shop.calls.append("save_tiktok_order")
            return OrderRef(order_id=f"ord_tt_{req.order.tiktok_order_id}")

        @activity.defn(name="ship_tiktok_package")
        async def ship_tiktok_package(req: ShipTikTokPackage) -> None:
            shop.calls.append(f"ship_tiktok_package:{req.tracking_number}")
            if shop.tiktok_push_fails:
                raise ApplicationError(
                    "order cancelled", type=errors.TIKTOK_REJECTED, non_retryable=True
                )

        return [
            get_tiktok_order,
            save_tiktok_order,
            ship_tiktok_package,
            shipment_plan,
            quote_rates,
            buy_label,
            void_label,
            get_tracking,
            record_shipment,
            price_order,
            reserve_stock,
            commit_stock,
            release_stock,
            record_status,
            record_payment,
            record_refund,
            charge,
            refund,
            cancel_payment_intent,
            send_customer_email,
            deliver_merchant_webhook,
        ]
