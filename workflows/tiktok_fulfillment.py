"""TikTokFulfillment: webhook → order detail → saved order → Shipment → tracking to TikTok.

Started (and fed) by signal-with-start from ``POST /webhooks/tiktok``.
TikTok repeats and reorders webhooks: a notification seen before, or one older
than the newest seen, changes nothing. CANCELLED before the label: nothing is
bought; after the label but before the parcel leaves: the label is voided;
later: it is recorded and ignored. Workflow id: ``tiktok-{shop_id}-{order_id}``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.store import StoreActivities
    from activities.tiktok import TikTokActivities
    from fulfil import errors
    from fulfil.models import (
        CancelOrder,
        Label,
        OrderStatus,
        SaveTikTokOrder,
        ShipTikTokPackage,
        TikTokFulfillmentInput,
        TikTokOrder,
        TikTokOrderEvent,
        TikTokOrderRef,
        TikTokOrderStatus,
    )
    from fulfil.temporal import ORDER_ID, TIKTOK_ORDER_ID
    from workflows.order_lifecycle import OrderLifecycle

TIKTOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=errors.NON_RETRYABLE,
)
TIKTOK_TIMEOUT = timedelta(seconds=30)
READY_TO_SHIP = frozenset(
    {
        TikTokOrderStatus.AWAITING_SHIPMENT,
        TikTokOrderStatus.PARTIALLY_SHIPPING,
        TikTokOrderStatus.AWAITING_COLLECTION,
    }
)
# Keep the dedupe memory bounded; TikTok retries within hours, not thousands of events.
MAX_REMEMBERED = 500


@workflow.defn
class TikTokFulfillment(OrderLifecycle):
    def __init__(self) -> None:
        super().__init__()
        self._emails = False  # TikTok masks buyers' addresses and mails them itself
        self._seen: list[str] = []
        self._latest: TikTokOrderEvent | None = None
        self._ready = False
        self._order: TikTokOrder | None = None

    @workflow.run
    async def run(self, inp: TikTokFulfillmentInput) -> str:
        self._merchant_id = inp.merchant_id
        self._set_step("waiting for AWAITING_SHIPMENT")
        try:
            await workflow.wait_condition(
                lambda: self._ready or self._cancel is not None,
                timeout=timedelta(days=inp.config.await_shipment_days),
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
        if shipment.outcome in ("voided", "cancelled"):
            detail = "cancelled on TikTok" + (
                "; label voided" if shipment.outcome == "voided" else ""
            )
            await self._set_status(OrderStatus.CANCELLED, "order.cancelled", detail=detail)
        elif shipment.outcome in ("no_rate", "label_refused", "cannot_ship"):
            await self._set_status(
                OrderStatus.FAILED,
                "order.failed",
                detail=f"shipping_unavailable: {shipment.detail}",
                failure_reason="shipping_unavailable",
            )
        return await self._finish()

    async def _finish(self) -> str:
        # Merchant webhooks of the last status changes go out before the run closes.
        await self._drain_notifications()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status.value

    async def _save_order(self, inp: TikTokFulfillmentInput) -> None:
        self._set_step("fetching the order from TikTok")
        self._order = await workflow.execute_activity_method(
            TikTokActivities.get_tiktok_order,
            TikTokOrderRef(shop_id=inp.shop_id, tiktok_order_id=inp.tiktok_order_id),
            start_to_close_timeout=TIKTOK_TIMEOUT,
            retry_policy=TIKTOK_RETRY,
            summary=f"order detail {inp.tiktok_order_id}",
        )
        ref = await self._store(
            StoreActivities.save_tiktok_order,
            SaveTikTokOrder(merchant_id=inp.merchant_id, order=self._order),
            summary="save order",
        )
        self._order_id = ref.order_id
        if workflow.info().typed_search_attributes.get(TIKTOK_ORDER_ID) is not None:
            workflow.upsert_search_attributes([ORDER_ID.value_set(ref.order_id)])

    async def _label_bought(self, label: Label) -> None:
        order = self._order
        if order is None or order.package_id is None:
            return
        self._set_step("pushing tracking to TikTok")
        try:
            await workflow.execute_activity_method(
                TikTokActivities.ship_tiktok_package,
                ShipTikTokPackage(
                    shop_id=order.shop_id,
                    tiktok_order_id=order.tiktok_order_id,
                    package_id=order.package_id,
                    tracking_number=label.tracking_number,
                    carrier=label.carrier,
                    delivery_option_id=order.delivery_option_id,
                ),
                start_to_close_timeout=TIKTOK_TIMEOUT,
                retry_policy=TIKTOK_RETRY,
                summary=f"ship package {label.tracking_number}",
            )
        except ActivityError as err:
            # TikTok refused (e.g. the order was cancelled there meanwhile): ops see it.
            workflow.logger.error(
                "TikTok refused the tracking number",
                extra={"order_id": self._order_id, "error": str(err.cause or err)},
            )
        self._set_step("shipping")

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
