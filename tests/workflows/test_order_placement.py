"""OrderPlacement branches on the time-skipping server, activities stubbed by name.

With ``RECORD_HISTORIES=1`` each test writes its history under
``tests/histories/order_placement/`` for the replay test.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fulfil import errors
from fulfil.models import (
    Address,
    BuyLabel,
    CancelOrder,
    CancelPayment,
    ChargeRequest,
    ChargeResult,
    CustomerEmail,
    MerchantWebhook,
    OrderConfig,
    OrderPlacementInput,
    OrderProgress,
    OrderRef,
    OrderStatus,
    OrderStatusChange,
    PaymentRecord,
    PaymentSucceeded,
    PricedOrder,
    PriceOrder,
    RateOption,
    RatesQuote,
    RefundRecord,
    RefundRequest,
    RefundResult,
    ShipmentConfig,
    ShipmentPlan,
    ShipmentRecord,
    ShippingPolicy,
    StatusRecorded,
    TrackingQuery,
    TrackingStage,
    TrackingStatus,
    VoidLabel,
)
from fulfil.models import Label as ShippingLabel
from fulfil.money import PricedLine, Totals
from workflows.order_placement import OrderPlacement
from workflows.shipment import Shipment

HISTORIES = Path(__file__).parent.parent / "histories" / "order_placement"
SHIPMENT_HISTORIES = Path(__file__).parent.parent / "histories" / "shipment"


@dataclass
class Shop:
    """Stand-ins for every activity, registered under the real names."""

    charge_status: str = "succeeded"
    decline: bool = False
    out_of_stock: bool = False
    commit_fails: bool = False
    webhook_fails: bool = False
    no_rates: bool = False
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
            return True

        @activity.defn(name="get_tracking")
        async def get_tracking(query: TrackingQuery) -> TrackingStatus:
            stage = shop.tracking.pop(0) if len(shop.tracking) > 1 else shop.tracking[0]
            return TrackingStatus(stage=stage)

        @activity.defn(name="record_shipment")
        async def record_shipment(record: ShipmentRecord) -> None:
            shop.shipment_statuses.append(record.status)

        return [
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


def order_input(order_id: str, *, action_timeout: int = 900) -> OrderPlacementInput:
    return OrderPlacementInput(
        order_id=order_id,
        merchant_id="mer_test",
        payment_method="pm_card_visa",
        config=OrderConfig(
            flat_shipping_amount=500,
            payment_action_timeout_seconds=action_timeout,
            shipment=ShipmentConfig(tracking_poll_seconds=60),
        ),
    )


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def until_status(
    handle: WorkflowHandle[Any, Any], status: OrderStatus, step: str | None = None
) -> OrderProgress:
    progress: OrderProgress | None = None

    async def reached() -> bool:
        nonlocal progress
        progress = await handle.query(OrderPlacement.progress)
        return progress.status == status and (step is None or progress.step == step)

    await until(reached, f"{status} {step or ''}")
    assert progress is not None
    return progress


async def run_branch(
    env: WorkflowEnvironment,
    shop: Shop,
    name: str,
    drive: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]] | None = None,
    **input_kwargs: Any,
) -> OrderProgress:
    task_queue = f"tq-{uuid.uuid4()}"
    order_id = f"ord_{name}_{uuid.uuid4().hex[:6]}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[OrderPlacement, Shipment],
        activities=shop.activities(),
    ):
        handle = await env.client.start_workflow(
            OrderPlacement.run,
            order_input(order_id, **input_kwargs),
            id=f"order-{order_id}",
            task_queue=task_queue,
        )
        if drive is not None:
            await drive(handle)
        result: OrderProgress = await handle.result()
        if os.environ.get("RECORD_HISTORIES"):
            HISTORIES.mkdir(parents=True, exist_ok=True)
            history = await handle.fetch_history()
            (HISTORIES / f"{name}.json").write_text(history.to_json())
            child = env.client.get_workflow_handle(f"shipment-{order_id}")
            try:
                child_history = await child.fetch_history()
            except RPCError:
                pass
            else:
                SHIPMENT_HISTORIES.mkdir(parents=True, exist_ok=True)
                (SHIPMENT_HISTORIES / f"{name}.json").write_text(child_history.to_json())
    return result


async def test_happy_path_pays_ships_and_delivers(ts_env: WorkflowEnvironment) -> None:
    shop = Shop()
    result = await run_branch(ts_env, shop, "happy")
    assert result.status == OrderStatus.DELIVERED
    assert shop.calls == [
        "price_order",
        "reserve_stock",
        "charge",
        "record_payment:succeeded",
        "commit_stock",
        "buy_label:r1",
    ]
    assert shop.statuses == [
        "payment.started",
        "payment.succeeded",
        "fulfilment.started",
        "order.shipped",
        "order.delivered",
    ]
    assert shop.shipment_statuses == ["label_purchased", "transit", "delivered"]
    assert shop.emails == ["confirmed", "shipped", "delivered"]


async def test_declined_card_releases_stock_and_fails(ts_env: WorkflowEnvironment) -> None:
    shop = Shop(decline=True)
    result = await run_branch(ts_env, shop, "declined")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "payment_declined"
    assert shop.calls == ["price_order", "reserve_stock", "charge", "release_stock"]
    assert shop.emails == ["failed"]


async def test_out_of_stock_charges_nothing(ts_env: WorkflowEnvironment) -> None:
    shop = Shop(out_of_stock=True)
    result = await run_branch(ts_env, shop, "out_of_stock")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "out_of_stock"
    assert shop.calls == ["price_order", "reserve_stock"]
    assert shop.statuses == ["order.failed"]


async def test_failure_after_payment_refunds_then_releases(ts_env: WorkflowEnvironment) -> None:
    shop = Shop(commit_fails=True)
    result = await run_branch(ts_env, shop, "commit_failed")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "fulfilment_error"
    assert shop.calls[-4:] == ["commit_stock", "refund", "record_refund", "release_stock"]
    assert shop.emails == ["failed"]


async def test_no_rate_for_the_policy_refunds_and_fails(ts_env: WorkflowEnvironment) -> None:
    shop = Shop(no_rates=True)
    result = await run_branch(ts_env, shop, "no_rate")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "shipping_unavailable"
    assert shop.calls[-3:] == ["refund", "record_refund", "release_stock"]
    assert shop.shipment_statuses == ["no_rate"]


async def test_authentication_completed_by_webhook_signal(ts_env: WorkflowEnvironment) -> None:
    shop = Shop(charge_status="requires_action")

    async def authenticate(handle: WorkflowHandle[Any, Any]) -> None:
        progress = await until_status(
            handle,
            OrderStatus.AWAITING_PAYMENT,
            "waiting for the customer to authenticate the payment",
        )
        assert progress.payment_intent_id is not None
        await handle.signal(
            OrderPlacement.payment_succeeded,
            PaymentSucceeded(payment_intent_id=progress.payment_intent_id),
        )

    result = await run_branch(ts_env, shop, "authenticated", authenticate)
    assert result.status == OrderStatus.DELIVERED
    assert shop.calls[2:6] == [
        "charge",
        "record_payment:requires_action",
        "record_payment:succeeded",
        "commit_stock",
    ]


async def test_authentication_timeout_cancels_payment_and_releases(
    ts_env: WorkflowEnvironment,
) -> None:
    shop = Shop(charge_status="requires_action")
    result = await run_branch(ts_env, shop, "auth_timeout", action_timeout=900)
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "payment_timeout"
    assert shop.calls[-3:] == ["cancel_payment_intent", "record_payment:canceled", "release_stock"]
    assert "refund" not in shop.calls


async def test_cancel_after_label_voids_it_refunds_and_restocks(
    ts_env: WorkflowEnvironment,
) -> None:
    shop = Shop(tracking=[TrackingStage.PRE_TRANSIT])

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        async def label_bought() -> bool:
            return "label_purchased" in shop.shipment_statuses

        await until(label_bought, "label bought")
        progress = await handle.execute_update(
            OrderPlacement.cancel, CancelOrder(reason="customer changed mind")
        )
        assert progress.status == OrderStatus.CANCELLED

    result = await run_branch(ts_env, shop, "cancel_after_label", cancel)
    assert result.status == OrderStatus.CANCELLED
    assert shop.calls[-4:] == ["void_label", "refund", "record_refund", "release_stock"]
    assert shop.shipment_statuses[-1] == "voided"
    assert shop.emails == ["confirmed", "cancelled"]


async def test_cancel_after_shipping_is_refused_and_the_order_delivers(
    ts_env: WorkflowEnvironment,
) -> None:
    shop = Shop(tracking=[TrackingStage.TRANSIT])

    async def cancel_late(handle: WorkflowHandle[Any, Any]) -> None:
        async def shipped() -> bool:
            await ts_env.sleep(timedelta(seconds=61))
            progress = await handle.query(OrderPlacement.progress)
            return bool(progress.status == OrderStatus.SHIPPED)

        await until(shipped, "shipped")
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(OrderPlacement.cancel, CancelOrder())
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == errors.ORDER_NOT_CANCELLABLE
        shop.tracking[:] = [TrackingStage.DELIVERED]

    result = await run_branch(ts_env, shop, "cancel_after_shipped", cancel_late)
    assert result.status == OrderStatus.DELIVERED
    assert "refund" not in shop.calls
    assert "void_label" not in shop.calls


async def test_cancel_while_authenticating_charges_nothing(ts_env: WorkflowEnvironment) -> None:
    shop = Shop(charge_status="requires_action")

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        await until_status(
            handle,
            OrderStatus.AWAITING_PAYMENT,
            "waiting for the customer to authenticate the payment",
        )
        progress = await handle.execute_update(OrderPlacement.cancel, CancelOrder())
        assert progress.status == OrderStatus.CANCELLED

    result = await run_branch(ts_env, shop, "cancel_while_authenticating", cancel)
    assert result.status == OrderStatus.CANCELLED
    assert "cancel_payment_intent" in shop.calls
    assert "refund" not in shop.calls
    assert shop.calls[-1] == "release_stock"


async def test_failing_merchant_webhook_never_undoes_the_order(ts_env: WorkflowEnvironment) -> None:
    shop = Shop(webhook_fails=True)
    result = await run_branch(ts_env, shop, "webhook_down")
    assert result.status == OrderStatus.DELIVERED
    assert "refund" not in shop.calls
    assert "release_stock" not in shop.calls


async def test_cancel_is_rejected_once_terminal(ts_env: WorkflowEnvironment) -> None:
    """The validator refuses a cancel once terminal (failed, held open by a slow email)."""
    shop = Shop(decline=True)
    email_gate = asyncio.Event()

    @activity.defn(name="send_customer_email")
    async def slow_email(req: CustomerEmail) -> None:
        await email_gate.wait()

    acts = [
        a
        for a in shop.activities()
        if a.__temporal_activity_definition.name != "send_customer_email"  # type: ignore[attr-defined]
    ]
    task_queue = f"tq-{uuid.uuid4()}"
    order_id = f"ord_{uuid.uuid4().hex[:6]}"
    async with Worker(
        ts_env.client,
        task_queue=task_queue,
        workflows=[OrderPlacement, Shipment],
        activities=[*acts, slow_email],
    ):
        handle = await ts_env.client.start_workflow(
            OrderPlacement.run, order_input(order_id), id=f"order-{order_id}", task_queue=task_queue
        )
        await until_status(handle, OrderStatus.FAILED)
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(OrderPlacement.cancel, CancelOrder())
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == errors.ORDER_NOT_CANCELLABLE
        email_gate.set()
        assert (await handle.result()).status == OrderStatus.FAILED
