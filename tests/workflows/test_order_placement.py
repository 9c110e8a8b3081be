"""OrderPlacement branches on the time-skipping server, activities stubbed by name.

With ``RECORD_HISTORIES=1`` each test writes its history under
``tests/histories/order_placement/`` for the replay test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from fulfil import errors
from fulfil.enums import OrderStatus, TrackingStage
from fulfil.messages.orders import (
    CancelOrder,
    CustomerEmail,
    OrderConfig,
    OrderPayout,
    OrderPlacementInput,
    OrderProgress,
    PaymentSucceeded,
)
from fulfil.messages.payouts import PayoutConfig
from fulfil.messages.shipment import ShipmentConfig
from tests.workflows.fakes import (
    FakeInventory,
    FakeNotify,
    FakeOrderRecords,
    FakePayments,
    Fakes,
    FakeShipping,
    record_histories,
)
from tests.workflows.waiting import until
from workflows.escrow_payout import EscrowPayout
from workflows.order_placement import OrderPlacement
from workflows.shipment import Shipment

# The check that the order can ship, before any money moves.
CAN_SHIP = ["shipment_plan", "quote_rates"]


def order_input(
    order_id: str, *, action_timeout: int = 900, connect: bool = False
) -> OrderPlacementInput:
    return OrderPlacementInput(
        order_id=order_id,
        merchant_id="mer_test",
        payment_method="pm_card_visa",
        config=OrderConfig(
            flat_shipping_amount=500,
            payment_action_timeout_seconds=action_timeout,
            shipment=ShipmentConfig(tracking_poll_seconds=60),
        ),
        payout=(
            OrderPayout(
                payout_id=f"pay_{order_id}",
                stripe_account="acct_seller",
                config=PayoutConfig(hold_seconds=3 * 86400, fee_bps=1500),
            )
            if connect
            else None
        ),
    )


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
    fakes: Fakes,
    name: str,
    drive: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]] | None = None,
    **input_kwargs: Any,
) -> OrderProgress:
    task_queue = f"tq-{uuid.uuid4()}"
    order_id = f"ord_{name}_{uuid.uuid4().hex[:6]}"
    async with fakes.workers(env.client, task_queue, [OrderPlacement, Shipment, EscrowPayout]):
        handle = await env.client.start_workflow(
            OrderPlacement.run,
            order_input(order_id, **input_kwargs),
            id=f"order-{order_id}",
            task_queue=task_queue,
        )
        if drive is not None:
            await drive(handle)
        result: OrderProgress = await handle.result()
        await record_histories(env, handle, "order_placement", name, order_id)
    return result


async def test_happy_path_pays_ships_and_delivers(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    result = await run_branch(ts_env, fakes, "happy")
    assert result.status == OrderStatus.DELIVERED
    assert fakes.calls == [
        "price_order",
        *CAN_SHIP,
        "reserve_stock",
        "charge",
        "record_payment:succeeded",
        "commit_stock",
        "shipment_plan",
        "quote_rates",
        "buy_label:r1",
    ]
    assert fakes.statuses == [
        "payment.started",
        "payment.succeeded",
        "fulfilment.started",
        "order.shipped",
        "order.delivered",
    ]
    assert fakes.shipment_statuses == ["label_purchased", "transit", "delivered"]
    assert fakes.emails == ["confirmed", "shipped", "delivered"]


async def test_declined_card_releases_stock_and_fails(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(payments=FakePayments(decline=True))
    result = await run_branch(ts_env, fakes, "declined")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "payment_declined"
    assert fakes.calls == ["price_order", *CAN_SHIP, "reserve_stock", "charge", "release_stock"]
    assert fakes.emails == ["failed"]


async def test_out_of_stock_charges_nothing(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(inventory=FakeInventory(out_of_stock=True))
    result = await run_branch(ts_env, fakes, "out_of_stock")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "out_of_stock"
    assert fakes.calls == ["price_order", *CAN_SHIP, "reserve_stock"]
    assert fakes.statuses == ["order.failed"]


async def test_failure_after_payment_refunds_then_releases(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(inventory=FakeInventory(commit_fails=True))
    result = await run_branch(ts_env, fakes, "commit_failed")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "fulfilment_error"
    assert fakes.calls[-4:] == ["commit_stock", "refund", "record_refund", "release_stock"]
    assert fakes.emails == ["failed"]


async def test_no_rate_for_the_policy_fails_before_any_money_moves(
    ts_env: WorkflowEnvironment,
) -> None:
    """Defect: such an order used to be charged, then refunded (Stripe keeps its fee)."""
    fakes = Fakes(shipping=FakeShipping(no_rates=True))
    result = await run_branch(ts_env, fakes, "no_rate")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "shipping_unavailable"
    assert fakes.calls == ["price_order", *CAN_SHIP]
    assert fakes.statuses == ["order.failed"]
    assert fakes.shipment_statuses == []
    assert fakes.emails == ["failed"]


async def test_merchant_without_ship_from_fails_before_any_money_moves(
    ts_env: WorkflowEnvironment,
) -> None:
    """The merchant cleared its ship-from address after the order was accepted."""
    fakes = Fakes(records=FakeOrderRecords(cannot_ship=True))
    result = await run_branch(ts_env, fakes, "cannot_ship")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "shipping_unavailable"
    assert fakes.calls == ["price_order", "shipment_plan"]
    assert "charge" not in fakes.calls


async def test_label_refused_after_payment_refunds_and_fails(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(label_refused=True))
    result = await run_branch(ts_env, fakes, "label_refused")
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "shipping_unavailable"
    assert fakes.calls[-3:] == ["refund", "record_refund", "release_stock"]
    assert fakes.shipment_statuses == ["label_refused"]


async def test_authentication_completed_by_webhook_signal(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(payments=FakePayments(charge_status="requires_action"))

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

    result = await run_branch(ts_env, fakes, "authenticated", authenticate)
    assert result.status == OrderStatus.DELIVERED
    assert fakes.calls[4:9] == [
        "charge",
        "record_payment:requires_action",
        "verify_payment:succeeded",
        "record_payment:succeeded",
        "commit_stock",
    ]


async def test_forged_payment_signal_is_checked_with_stripe_and_ignored(
    ts_env: WorkflowEnvironment,
) -> None:
    """Finding: a plain payment_succeeded signal made an unauthenticated order paid."""
    fakes = Fakes(
        payments=FakePayments(charge_status="requires_action", stripe_status="requires_action")
    )

    async def forge(handle: WorkflowHandle[Any, Any]) -> None:
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

        async def checked() -> bool:
            return "verify_payment:requires_action" in fakes.calls

        await until(checked, "the signal checked with Stripe")
        progress = await handle.query(OrderPlacement.progress)
        assert progress.status == OrderStatus.AWAITING_PAYMENT

    result = await run_branch(ts_env, fakes, "forged_payment_signal", forge)
    # Stripe never confirmed it: the authentication window ran out.
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "payment_timeout"
    assert "record_payment:succeeded" not in fakes.calls
    assert "commit_stock" not in fakes.calls


async def test_authentication_timeout_cancels_payment_and_releases(
    ts_env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(payments=FakePayments(charge_status="requires_action"))
    result = await run_branch(ts_env, fakes, "auth_timeout", action_timeout=900)
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "payment_timeout"
    assert fakes.calls[-3:] == ["cancel_payment_intent", "record_payment:canceled", "release_stock"]
    assert "refund" not in fakes.calls


async def test_cancel_after_label_voids_it_refunds_and_restocks(
    ts_env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(shipping=FakeShipping(tracking=[TrackingStage.PRE_TRANSIT]))

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        async def label_bought() -> bool:
            return "label_purchased" in fakes.shipment_statuses

        await until(label_bought, "label bought")
        progress = await handle.execute_update(
            OrderPlacement.cancel, CancelOrder(reason="customer changed mind")
        )
        assert progress.status == OrderStatus.CANCELLED

    result = await run_branch(ts_env, fakes, "cancel_after_label", cancel)
    assert result.status == OrderStatus.CANCELLED
    assert fakes.calls[-4:] == ["void_label", "refund", "record_refund", "release_stock"]
    assert fakes.shipment_statuses[-1] == "voided"
    assert fakes.emails == ["confirmed", "cancelled"]


async def test_cancel_after_shipping_is_refused_and_the_order_delivers(
    ts_env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(shipping=FakeShipping(tracking=[TrackingStage.TRANSIT]))

    async def cancel_late(handle: WorkflowHandle[Any, Any]) -> None:
        # The first tracking read, right after the label, finds the parcel in transit.
        await until_status(handle, OrderStatus.SHIPPED)
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(OrderPlacement.cancel, CancelOrder())
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == errors.ORDER_NOT_CANCELLABLE
        fakes.shipping.tracking[:] = [TrackingStage.DELIVERED]

    result = await run_branch(ts_env, fakes, "cancel_after_shipped", cancel_late)
    assert result.status == OrderStatus.DELIVERED
    assert "refund" not in fakes.calls
    assert "void_label" not in fakes.calls


async def test_cancel_while_authenticating_charges_nothing(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(payments=FakePayments(charge_status="requires_action"))

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        await until_status(
            handle,
            OrderStatus.AWAITING_PAYMENT,
            "waiting for the customer to authenticate the payment",
        )
        progress = await handle.execute_update(OrderPlacement.cancel, CancelOrder())
        assert progress.status == OrderStatus.CANCELLED

    result = await run_branch(ts_env, fakes, "cancel_while_authenticating", cancel)
    assert result.status == OrderStatus.CANCELLED
    assert "cancel_payment_intent" in fakes.calls
    assert "refund" not in fakes.calls
    assert fakes.calls[-1] == "release_stock"


async def test_failing_merchant_webhook_never_undoes_the_order(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(notify=FakeNotify(webhook_fails=True))
    result = await run_branch(ts_env, fakes, "webhook_down")
    assert result.status == OrderStatus.DELIVERED
    assert "refund" not in fakes.calls
    assert "release_stock" not in fakes.calls


async def test_cancel_is_rejected_once_terminal(ts_env: WorkflowEnvironment) -> None:
    """The validator refuses a cancel once terminal (failed, held open by a slow email)."""
    fakes = Fakes(payments=FakePayments(decline=True))
    email_gate = asyncio.Event()

    @activity.defn(name="send_customer_email")
    async def slow_email(req: CustomerEmail) -> None:
        await email_gate.wait()

    task_queue = f"tq-{uuid.uuid4()}"
    order_id = f"ord_{uuid.uuid4().hex[:6]}"
    async with fakes.workers(ts_env.client, task_queue, [OrderPlacement, Shipment], slow_email):
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


async def test_unencrypted_payment_signal_is_dropped(ts_env: WorkflowEnvironment) -> None:
    """Finding: plain JSON sent around the codec (temporal CLI, UI) reached the workflow."""
    fakes = Fakes(payments=FakePayments(charge_status="requires_action"))

    async def forge_in_plain_json(handle: WorkflowHandle[Any, Any]) -> None:
        progress = await until_status(
            handle,
            OrderStatus.AWAITING_PAYMENT,
            "waiting for the customer to authenticate the payment",
        )
        plain = await Client.connect(
            ts_env.client.service_client.config.target_host, namespace=ts_env.client.namespace
        )
        await plain.get_workflow_handle(handle.id).signal(
            "payment_succeeded", {"payment_intent_id": progress.payment_intent_id}
        )
        # A signal that was read would be checked with Stripe; a refused one never is.
        await handle.query(OrderPlacement.progress)
        assert not [c for c in fakes.calls if c.startswith("verify_payment")]

    result = await run_branch(ts_env, fakes, "plain_signal_refused", forge_in_plain_json)
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "payment_timeout"
    assert not [c for c in fakes.calls if c.startswith("verify_payment")]


async def test_a_connect_sellers_order_starts_its_payout_and_a_cancel_stops_it(
    ts_env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(shipping=FakeShipping(tracking=[TrackingStage.PRE_TRANSIT]))

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        async def payout_holding() -> bool:
            return "payout:holding" in fakes.calls

        await until(payout_holding, "payout started")
        progress = await handle.execute_update(OrderPlacement.cancel, CancelOrder())
        assert progress.status == OrderStatus.CANCELLED

        async def payout_refunded() -> bool:
            return "payout:refunded" in fakes.calls

        await until(payout_refunded, "payout refunded")

    result = await run_branch(ts_env, fakes, "payout_cancelled", cancel, connect=True)
    assert result.status == OrderStatus.CANCELLED
    assert fakes.payouts.postings == ["split", "unsplit"]
    assert fakes.payouts.transfers == []
    assert "refund" in fakes.calls  # the order refunded, once; the payout only unsplit
    assert not [c for c in fakes.calls if c.startswith("refund_payout")]
