"""TikTokFulfillment: webhook → order detail → saved order → Shipment → tracking to TikTok.

Started (and fed) by signal-with-start from ``POST /webhooks/tiktok``.
TikTok repeats and reorders webhooks: a notification seen before, or one older
than the newest seen, changes nothing. CANCELLED before the label: nothing is
bought; after the label but before the parcel leaves: the label is voided;
later: it is recorded and ignored. Pushing the tracking number to TikTok runs
beside the shipment, so a cancel arriving while TikTok is failing still voids the
label at once (and stops the push). Workflow id: ``tiktok-{shop_id}-{order_id}``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.order_records import OrderRecordActivities
    from activities.tiktok import TikTokActivities
    from fulfil.enums import (
        SHIPMENT_CANCELLED,
        SHIPMENT_UNAVAILABLE,
        FailureReason,
        OrderStatus,
        ShipmentOutcome,
        TikTokOrderStatus,
    )
    from fulfil.messages.orders import CancelOrder
    from fulfil.messages.shipment import Label
    from fulfil.messages.tiktok import (
        SaveTikTokOrder,
        ShipTikTokPackage,
        TikTokFulfillmentInput,
        TikTokOrder,
        TikTokOrderEvent,
        TikTokOrderRef,
    )
    from fulfil.temporal import ORDER_ID, TIKTOK_ORDER_ID
    from workflows.order_lifecycle import OrderLifecycle
READY_TO_SHIP = frozenset(
    {
        TikTokOrderStatus.AWAITING_SHIPMENT,
        TikTokOrderStatus.PARTIALLY_SHIPPING,
        TikTokOrderStatus.AWAITING_COLLECTION,
    }
)
# Keep the dedupe memory bounded; TikTok retries within hours, not thousands of events.
MAX_REMEMBERED = 500
# Versions of this workflow (runs in flight keep the path they started on).
PUSH_BESIDE_SHIPMENT = "push-tracking-beside-shipment"


@workflow.defn
class TikTokFulfillment(OrderLifecycle):
    def __init__(self) -> None:
        super().__init__()
        self._emails = False  # TikTok masks buyers' addresses and mails them itself
        self._seen: list[str] = []
        self._latest: TikTokOrderEvent | None = None
        self._ready = False
        self._order: TikTokOrder | None = None
        self._push: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, inp: TikTokFulfillmentInput) -> str:
        self._merchant_id = inp.merchant_id
        self._set_step("waiting for AWAITING_SHIPMENT")
        try:
            await workflow.wait_condition(
                lambda: self._ready or self._cancel is not None,
                timeout=timedelta(days=inp.config.await_shipment_days),
                timeout_summary="TikTok releases the order for shipment",
            )
        except TimeoutError:
            workflow.logger.warning(
                "TikTok order never became shippable",
                extra={"tiktok_order_id": inp.tiktok_order_id},
            )
            return "abandoned"

        await self._save_order(inp)
        if self._cancel is not None:
            await self._set_status(
                OrderStatus.CANCELLED, "order.cancelled", detail="cancelled on TikTok"
            )
            return await self._finish()
        await self._set_status(
            OrderStatus.PAID, "tiktok.awaiting_shipment", detail="paid on TikTok"
        )

        shipment = await self._ship(inp.config.shipment)
        if shipment.outcome in SHIPMENT_CANCELLED:
            detail = "cancelled on TikTok" + (
                "; label voided" if shipment.outcome == ShipmentOutcome.VOIDED else ""
            )
            await self._set_status(OrderStatus.CANCELLED, "order.cancelled", detail=detail)
        elif shipment.outcome in SHIPMENT_UNAVAILABLE:
            reason = FailureReason.SHIPPING_UNAVAILABLE
            await self._set_status(
                OrderStatus.FAILED,
                "order.failed",
                detail=f"{reason.value}: {shipment.detail}",
                failure_reason=reason,
            )
        return await self._finish()

    async def _finish(self) -> str:
        if self._push is not None:
            await asyncio.gather(self._push, return_exceptions=True)
        # Merchant webhooks of the last status changes go out before the run closes.
        await self._drain_notifications()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status.value

    async def _save_order(self, inp: TikTokFulfillmentInput) -> None:
        self._set_step("fetching the order from TikTok")
        self._order = await self._provider(
            TikTokActivities.get_tiktok_order,
            TikTokOrderRef(shop_id=inp.shop_id, tiktok_order_id=inp.tiktok_order_id),
            summary=f"order detail {inp.tiktok_order_id}",
        )
        ref = await self._db(
            OrderRecordActivities.save_tiktok_order,
            SaveTikTokOrder(merchant_id=inp.merchant_id, order=self._order),
            summary="save order",
        )
        self._order_id = ref.order_id
        if workflow.info().typed_search_attributes.get(TIKTOK_ORDER_ID) is not None:
            workflow.upsert_search_attributes([ORDER_ID.value_set(ref.order_id)])

    async def _label_bought(self, label: Label) -> None:
        if self._order is None or self._order.package_id is None:
            return
        if workflow.patched(PUSH_BESIDE_SHIPMENT):
            self._push = asyncio.create_task(self._push_tracking(label))
            return
        self._set_step("pushing tracking to TikTok")
        await self._push_tracking(label)
        self._set_step("shipping")

    def _stop_label_work(self) -> None:
        if self._push is not None and not self._push.done():
            self._push.cancel()

    async def _push_tracking(self, label: Label) -> None:
        """Tell TikTok the carrier and tracking number (ship package); retried while
        TikTok fails, stopped when the order is cancelled meanwhile."""
        order = self._order
        assert order is not None
        assert order.package_id is not None
        try:
            await self._provider(
                TikTokActivities.ship_tiktok_package,
                ShipTikTokPackage(
                    shop_id=order.shop_id,
                    tiktok_order_id=order.tiktok_order_id,
                    package_id=order.package_id,
                    tracking_number=label.tracking_number,
                    carrier=label.carrier,
                    delivery_option_id=order.delivery_option_id,
                ),
                summary=f"ship package {label.tracking_number}",
                # A cancel stops waiting for it at once; TikTok refuses the push of a
                # cancelled order anyway, and the server drops it when the run closes.
                cancellation_type=ActivityCancellationType.ABANDON,
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                workflow.logger.info(
                    "tracking push stopped: the order was cancelled",
                    extra={"order_id": self._order_id},
                )
                return
            # TikTok refused (e.g. the order was cancelled there meanwhile): ops see it.
            workflow.logger.error(
                "TikTok refused the tracking number",
                extra={"order_id": self._order_id, "error": str(err.cause or err)},
            )
        except asyncio.CancelledError:
            workflow.logger.info(
                "tracking push stopped: the order was cancelled",
                extra={"order_id": self._order_id},
            )

    @workflow.signal
    def order_status_changed(self, event: TikTokOrderEvent) -> None:
        if event.notification_id in self._seen:
            return  # a repeated delivery
        self._seen = [*self._seen[-MAX_REMEMBERED:], event.notification_id]
        if self._latest is not None and event.update_time < self._latest.update_time:
            return  # stale: an older status arriving late
        self._latest = event
        if event.order_status == TikTokOrderStatus.CANCELLED:
            if self._cancel is None and self._status not in (OrderStatus.CANCELLED,):
                self._cancel = CancelOrder(reason="cancelled on TikTok")
        elif event.order_status in READY_TO_SHIP:
            self._ready = True

    @workflow.query
    def status(self) -> str:
        return self._status.value
