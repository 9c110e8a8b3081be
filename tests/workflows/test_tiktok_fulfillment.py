"""TikTokFulfillment branches on the time-skipping server, activities stubbed by name.

Events arrive as TikTok sends them: repeated, out of order, cancelled at
any point. With ``RECORD_HISTORIES=1`` each test writes its history under
``tests/histories/tiktok_fulfillment/`` (and its shipment's under ``shipment/``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from fulfil.enums import TrackingStage
from fulfil.messages.shipment import ShipmentConfig
from fulfil.messages.tiktok import TikTokConfig, TikTokFulfillmentInput, TikTokOrderEvent
from tests.workflows.fakes import (
    Fakes,
    FakeShipping,
    FakeTikTok,
    record_histories,
)
from tests.workflows.waiting import until
from workflows.names import signal_name
from workflows.shipment import Shipment
from workflows.tiktok_fulfillment import TikTokFulfillment

Drive = Callable[[WorkflowHandle[Any, Any]], Awaitable[None]]


def event(notification: str, status: str, at: int) -> TikTokOrderEvent:
    return TikTokOrderEvent(notification_id=notification, order_status=status, update_time=at)


AWAITING = event("n-awaiting", "AWAITING_SHIPMENT", 100)


async def run_tiktok(
    env: WorkflowEnvironment,
    fakes: Fakes,
    name: str,
    first: TikTokOrderEvent = AWAITING,
    drive: Drive | None = None,
    await_shipment_days: int = 30,
) -> str:
    task_queue = f"tq-{uuid.uuid4()}"
    tiktok_id = f"57{uuid.uuid4().int % 10**16:016d}"
    inp = TikTokFulfillmentInput(
        shop_id="7494049642642441621",
        tiktok_order_id=tiktok_id,
        merchant_id="mer_test",
        config=TikTokConfig(
            shipment=ShipmentConfig(tracking_poll_seconds=60),
            await_shipment_days=await_shipment_days,
        ),
    )
    async with fakes.workers(env.client, task_queue, [TikTokFulfillment, Shipment]):
        handle = await env.client.start_workflow(
            TikTokFulfillment.run,
            inp,
            id=f"tiktok-{inp.shop_id}-{tiktok_id}",
            task_queue=task_queue,
            start_signal=signal_name(TikTokFulfillment.order_status_changed),
            start_signal_args=[first],
        )
        if drive is not None:
            await drive(handle)
        result: str = await handle.result()
        await record_histories(env, handle, "tiktok_fulfillment", name, f"ord_tt_{tiktok_id}")
    return result


async def test_awaiting_shipment_ships_pushes_tracking_and_delivers(
    ts_env: WorkflowEnvironment,
) -> None:
    fakes = Fakes()
    assert await run_tiktok(ts_env, fakes, "happy") == "delivered"
    assert fakes.calls == [
        "get_tiktok_order",
        "save_tiktok_order",
        "shipment_plan",
        "quote_rates",
        "buy_label:r1",
        "ship_tiktok_package:TRACK1",
    ]
    assert fakes.statuses == [
        "tiktok.awaiting_shipment",
        "fulfilment.started",
        "order.shipped",
        "order.delivered",
    ]
    assert fakes.emails == []  # TikTok mails its buyers itself


async def test_repeated_and_stale_events_change_nothing(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(tracking=[TrackingStage.PRE_TRANSIT]))

    async def noisy(handle: WorkflowHandle[Any, Any]) -> None:
        await handle.signal(
            TikTokFulfillment.order_status_changed, event("n-2", "AWAITING_SHIPMENT", 200)
        )
        await handle.signal(
            TikTokFulfillment.order_status_changed, event("n-2", "AWAITING_SHIPMENT", 200)
        )
        await handle.signal(TikTokFulfillment.order_status_changed, event("n-0", "UNPAID", 50))
        await handle.signal(
            TikTokFulfillment.order_status_changed, event("n-old", "CANCELLED", 150)
        )
        await until(lambda: "label_purchased" in fakes.shipment_statuses, "label bought")
        fakes.shipping.tracking[:] = [TrackingStage.TRANSIT, TrackingStage.DELIVERED]

    assert await run_tiktok(ts_env, fakes, "repeated_and_stale", AWAITING, noisy) == "delivered"
    assert fakes.calls.count("get_tiktok_order") == 1
    assert fakes.calls.count("save_tiktok_order") == 1
    assert "void_label" not in fakes.calls


async def test_cancelled_before_the_label_buys_nothing(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(quote_gate=asyncio.Event()))

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        await until(lambda: "fulfilment.started" in fakes.statuses, "fulfilment started")
        await handle.signal(TikTokFulfillment.order_status_changed, event("n-c", "CANCELLED", 300))
        await until(lambda: "order.cancelled" in fakes.statuses, "cancelled")
        # Let the abandoned quote finish: nothing may stay in flight on the shared server.
        assert fakes.shipping.quote_gate is not None
        fakes.shipping.quote_gate.set()

    assert await run_tiktok(ts_env, fakes, "cancel_before_label", AWAITING, cancel) == "cancelled"
    assert not [c for c in fakes.calls if c.startswith("buy_label")]
    assert fakes.statuses[-1] == "order.cancelled"


async def test_cancelled_first_saves_the_order_as_cancelled(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    first = event("n-c", "CANCELLED", 100)
    assert await run_tiktok(ts_env, fakes, "cancelled_first", first) == "cancelled"
    assert fakes.calls == ["get_tiktok_order", "save_tiktok_order"]
    assert fakes.statuses == ["order.cancelled"]


async def test_cancelled_after_the_label_voids_it(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(tracking=[TrackingStage.PRE_TRANSIT]))

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        await until(lambda: "label_purchased" in fakes.shipment_statuses, "label bought")
        await handle.signal(TikTokFulfillment.order_status_changed, event("n-c", "CANCELLED", 300))

    assert await run_tiktok(ts_env, fakes, "cancel_after_label", AWAITING, cancel) == "cancelled"
    # The tracking push runs beside the shipment and is abandoned, not awaited, on a cancel
    # (TikTok refuses it for a cancelled order): it may land before or after the void.
    calls = [c for c in fakes.calls if not c.startswith("ship_tiktok_package")]
    assert calls[-1] == "void_label"
    assert fakes.shipment_statuses[-1] == "voided"


async def test_cancel_while_tiktok_refuses_the_tracking_push_voids_the_label(
    ts_env: WorkflowEnvironment,
) -> None:
    """Defect: the cancel waited for the failing push to give up, and the parcel left."""
    fakes = Fakes(
        shipping=FakeShipping(tracking=[TrackingStage.PRE_TRANSIT]),
        tiktok=FakeTikTok(push_outage=10**9),
    )

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        def pushing() -> bool:
            return any(c.startswith("ship_tiktok_package") for c in fakes.calls)

        await until(pushing, "the push is being retried")
        await handle.signal(TikTokFulfillment.order_status_changed, event("n-c", "CANCELLED", 300))

    assert (
        await run_tiktok(ts_env, fakes, "cancel_while_push_failing", AWAITING, cancel)
        == "cancelled"
    )
    assert "void_label" in fakes.calls
    assert fakes.shipment_statuses[-1] == "voided"
    assert fakes.statuses[-1] == "order.cancelled"


async def test_cancelled_after_shipping_is_ignored(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(tracking=[TrackingStage.TRANSIT]))

    async def cancel_late(handle: WorkflowHandle[Any, Any]) -> None:
        await until(lambda: "order.shipped" in fakes.statuses, "shipped")
        await handle.signal(TikTokFulfillment.order_status_changed, event("n-c", "CANCELLED", 300))
        fakes.shipping.tracking[:] = [TrackingStage.DELIVERED]

    assert (
        await run_tiktok(ts_env, fakes, "cancel_after_shipped", AWAITING, cancel_late)
        == "delivered"
    )
    assert "void_label" not in fakes.calls


async def test_a_label_the_carrier_has_cannot_be_voided(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(tracking=[TrackingStage.PRE_TRANSIT], void_refused=True))

    async def cancel(handle: WorkflowHandle[Any, Any]) -> None:
        await until(lambda: "pre_transit" in fakes.shipment_statuses, "label read as pre-transit")
        # The carrier takes the parcel just as the cancel arrives.
        fakes.shipping.tracking[:] = [TrackingStage.TRANSIT, TrackingStage.DELIVERED]
        await handle.signal(TikTokFulfillment.order_status_changed, event("n-c", "CANCELLED", 300))

    assert await run_tiktok(ts_env, fakes, "void_refused", AWAITING, cancel) == "delivered"
    assert "void_label" in fakes.calls
    assert "order.cancelled" not in fakes.statuses


async def test_never_shippable_order_ends_after_the_wait(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    first = event("n-u", "UNPAID", 100)
    assert await run_tiktok(ts_env, fakes, "never_shippable", first, await_shipment_days=1) == (
        "abandoned"
    )
    assert fakes.calls == []


async def test_no_rate_fails_the_order_for_ops(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(no_rates=True))
    assert await run_tiktok(ts_env, fakes, "no_rate") == "failed"
    assert fakes.shipment_statuses == ["no_rate"]


async def test_refused_label_fails_the_order(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(label_refused=True))
    assert await run_tiktok(ts_env, fakes, "label_refused") == "failed"
    assert fakes.shipment_statuses == ["label_refused"]


async def test_tracking_refused_by_tiktok_still_ships(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(tiktok=FakeTikTok(push_refused=True))
    assert await run_tiktok(ts_env, fakes, "push_refused") == "delivered"


async def test_returned_parcel_stays_shipped(ts_env: WorkflowEnvironment) -> None:
    fakes = Fakes(shipping=FakeShipping(tracking=[TrackingStage.TRANSIT, TrackingStage.RETURNED]))
    assert await run_tiktok(ts_env, fakes, "returned") == "shipped"
    assert fakes.shipment_statuses[-1] == "returned"
