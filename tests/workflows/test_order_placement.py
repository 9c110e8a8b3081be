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
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fulfil import errors
from fulfil.models import (
    CancelOrder,
    CustomerEmail,
    OrderConfig,
    OrderPlacementInput,
    OrderProgress,
    OrderStatus,
    PaymentSucceeded,
    ShipmentConfig,
    TrackingStage,
)
from tests.workflows.stubs import Shop, record_histories
from workflows.order_placement import OrderPlacement
from workflows.shipment import Shipment


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
        await record_histories(env, handle, "order_placement", name, order_id)
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
        # The first tracking read, right after the label, finds the parcel in transit.
        await until_status(handle, OrderStatus.SHIPPED)
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
