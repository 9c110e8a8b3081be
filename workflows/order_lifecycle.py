"""What every order workflow shares (OrderPlacement, TikTokFulfillment).

Recording status changes with their events, search attribute and signed
merchant webhook; customer emails; step details for the Temporal UI; and
running the ``Shipment`` child, whose progress signals become the order's
``fulfilling`` → ``shipped`` → ``delivered``. A cancel while the parcel has not
left voids the label; after that it is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.order_records import OrderRecordActivities
    from fulfil.enums import (
        SHIPPED_OR_LATER,
        CustomerEmailKind,
        FailureReason,
        OrderStatus,
        ShipmentOutcome,
        TrackingStage,
    )
    from fulfil.ids import shipment_workflow_id
    from fulfil.messages.orders import (
        CancelOrder,
        OrderStatusChange,
    )
    from fulfil.messages.shipment import (
        Label,
        ShipmentConfig,
        ShipmentInput,
        ShipmentProgress,
        ShipmentResult,
        VoidRequest,
    )
    from fulfil.temporal import MERCHANT_ID, ORDER_ID, ORDER_STATUS
    from workflows import calls, policies
    from workflows.shipment import SHIPMENT_PROGRESS, Shipment


class OrderLifecycle:
    """Mixin for order workflows; the subclass sets ``_order_id`` and ``_merchant_id``."""

    def __init__(self) -> None:
        self._order_id = ""
        self._merchant_id = ""
        self._status = OrderStatus.PENDING
        # The status PostgreSQL already shows (handlers answer only once it is readable).
        self._recorded_status = OrderStatus.PENDING
        self._step = "created"
        self._cancel: CancelOrder | None = None
        self._cancel_refused = False
        self._label: Label | None = None
        self._shipment_inbox: list[ShipmentProgress] = []
        self._background: list[asyncio.Task[Any]] = []
        self._emails = True

    # --- status and notifications --------------------------------------------

    async def _db(
        self, activity: Callable[..., Awaitable[Any]], arg: Any, summary: str | None = None
    ) -> Any:
        """A PostgreSQL activity (order records, stock, ledger) with the database policy."""
        return await calls.db(activity, arg, summary)

    async def _provider(
        self,
        activity: Callable[..., Awaitable[Any]],
        arg: Any,
        *,
        summary: str,
        give_up: timedelta | None = None,
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    ) -> Any:
        """A provider call (Stripe, Shippo, TikTok) with the provider policy; ``give_up``
        bounds how long an outage may hold the order."""
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=policies.PROVIDER_TIMEOUT,
            schedule_to_close_timeout=give_up,
            retry_policy=policies.PROVIDER_RETRY,
            summary=summary,
            cancellation_type=cancellation_type,
        )

    async def _set_status(
        self,
        status: OrderStatus,
        event_type: str,
        *,
        detail: str = "",
        failure_reason: FailureReason | None = None,
    ) -> None:
        self._status = status
        recorded = await self._db(
            OrderRecordActivities.record_status,
            OrderStatusChange(
                order_id=self._order_id,
                status=status,
                event_type=event_type,
                detail=detail,
                failure_reason=failure_reason,
            ),
            summary=f"status {status.value}",
        )
        self._recorded_status = status
        if workflow.info().typed_search_attributes.get(ORDER_STATUS) is not None:
            workflow.upsert_search_attributes([ORDER_STATUS.value_set(status.value)])
        self._set_step(self._step)
        if recorded.notify_merchant:
            self._background.append(
                calls.merchant_webhook(self._order_id, recorded.event_id, status.value)
            )

    def _notify_customer(self, kind: CustomerEmailKind, detail: str = "") -> None:
        if not self._emails:
            return
        self._background.append(calls.email_customer(self._order_id, kind, detail))

    async def _drain_notifications(self) -> None:
        if self._background:
            self._set_step("delivering notifications")
            await asyncio.gather(*self._background, return_exceptions=True)

    def _set_step(self, step: str) -> None:
        self._step = step
        workflow.set_current_details(f"**{self._status.value}** · {step}")

    # --- shipping ------------------------------------------------------------

    async def _ship(self, config: ShipmentConfig) -> ShipmentResult:
        """Run the Shipment child to its end, cancelling it if asked while still possible."""
        await self._set_status(OrderStatus.FULFILLING, "fulfilment.started")
        self._set_step("shipping")
        child = await workflow.start_child_workflow(
            Shipment.run,
            ShipmentInput(
                order_id=self._order_id,
                merchant_id=self._merchant_id,
                parent_workflow_id=workflow.info().workflow_id,
                config=config,
            ),
            id=shipment_workflow_id(self._order_id),
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            search_attributes=self._child_search_attributes(),
            static_summary=f"Shipment of order {self._order_id}",
        )
        void_sent = False

        def ready() -> bool:
            wants_void = self._cancel is not None and not void_sent
            return bool(self._shipment_inbox) or child.done() or wants_void

        while True:
            await workflow.wait_condition(ready)
            while self._shipment_inbox:
                await self._on_shipment_progress(self._shipment_inbox.pop(0))
            if self._cancel is not None and self._status in SHIPPED_OR_LATER:
                self._refuse_cancel()
            elif self._cancel is not None and not void_sent:
                self._set_step("cancelling the shipment")
                self._stop_label_work()
                await child.signal(Shipment.void, VoidRequest(reason=self._cancel.reason))
                void_sent = True
            if child.done() and not self._shipment_inbox:
                break
        result: ShipmentResult = await child
        if result.outcome == ShipmentOutcome.DELIVERED and self._status != OrderStatus.DELIVERED:
            await self._set_status(OrderStatus.DELIVERED, "order.delivered")
        return result

    def _child_search_attributes(self) -> TypedSearchAttributes | None:
        """The shipment is found by the same OrderId and MerchantId in the Temporal UI."""
        if workflow.info().typed_search_attributes.get(MERCHANT_ID) is None:
            return None  # the namespace has no custom attributes (time-skipping tests)
        return TypedSearchAttributes(
            [
                SearchAttributePair(MERCHANT_ID, self._merchant_id),
                SearchAttributePair(ORDER_ID, self._order_id),
            ]
        )

    def _refuse_cancel(self) -> None:
        self._cancel = None
        self._cancel_refused = True

    async def _on_shipment_progress(self, progress: ShipmentProgress) -> None:
        stage = progress.stage
        if stage == TrackingStage.LABEL_PURCHASED and progress.label is not None:
            self._label = progress.label
            await self._label_bought(progress.label)
        elif stage == TrackingStage.TRANSIT and self._status not in SHIPPED_OR_LATER:
            label = self._label
            detail = f"{label.carrier} {label.tracking_number}" if label else ""
            await self._set_status(OrderStatus.SHIPPED, "order.shipped", detail=detail)
            self._notify_customer(CustomerEmailKind.SHIPPED, detail)
        elif stage == TrackingStage.DELIVERED and self._status != OrderStatus.DELIVERED:
            await self._set_status(OrderStatus.DELIVERED, "order.delivered")
            self._notify_customer(CustomerEmailKind.DELIVERED)
        elif stage in (TrackingStage.RETURNED, TrackingStage.FAILURE):
            workflow.logger.error(
                "shipment needs ops",
                extra={"order_id": self._order_id, "stage": stage.value, "detail": progress.detail},
            )

    async def _label_bought(self, label: Label) -> None:
        """Hook: the label exists (TikTok pushes the tracking number here).

        It must not hold up the loop of :meth:`_ship`: a cancel arriving meanwhile
        has to reach the Shipment while its label can still be voided."""

    def _stop_label_work(self) -> None:
        """Hook: the order is being cancelled; stop work started by :meth:`_label_bought`."""

    @workflow.signal(name=SHIPMENT_PROGRESS)
    def shipment_progress(self, progress: ShipmentProgress) -> None:
        """From the Shipment child: a new tracking stage."""
        self._shipment_inbox.append(progress)
