"""Shipment (child): rates → label by the merchant's policy → tracking to the end.

Tracking follows Shippo webhooks (the API signals ``tracking_changed``; this
workflow re-reads the status from Shippo before acting) with a polling
fallback when no webhook arrives for a while. Every stage change is written to
the order's read model and signalled to the parent, which owns the order's
status. ``void`` (the order was cancelled) stops before the label, or refunds
the label while the parcel has not yet left. Workflow id: ``shipment-{order_id}``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.order_records import OrderRecordActivities
    from activities.shipping import ShippingActivities
    from fulfil import errors
    from fulfil.enums import FINAL_TRACKING_STAGES, ShipmentOutcome, TrackingStage
    from fulfil.messages.orders import OrderRef
    from fulfil.messages.shipment import (
        BuyLabel,
        Label,
        ShipmentInput,
        ShipmentProgress,
        ShipmentRecord,
        ShipmentResult,
        TrackingChanged,
        TrackingQuery,
        VoidLabel,
        VoidRequest,
    )
    from fulfil.money import format_money
    from fulfil.shipping import choose_rate
    from workflows import policies

RETRY = policies.PROVIDER_RETRY
TIMEOUT = policies.PROVIDER_TIMEOUT
# The signal every parent defines (OrderLifecycle.shipment_progress).
SHIPMENT_PROGRESS = "shipment_progress"
# Without webhooks, poll at the base interval, backing off to this many times it.
MAX_POLL_BACKOFF = 8
# Keep histories short: a new run after this many tracking reads.
READS_PER_RUN = 200
VOIDABLE = frozenset(
    {TrackingStage.LABEL_PURCHASED, TrackingStage.PRE_TRANSIT, TrackingStage.UNKNOWN}
)
OUTCOMES = {
    TrackingStage.DELIVERED: ShipmentOutcome.DELIVERED,
    TrackingStage.RETURNED: ShipmentOutcome.RETURNED,
    TrackingStage.FAILURE: ShipmentOutcome.FAILURE,
}


@workflow.defn
class Shipment:
    def __init__(self) -> None:
        self._void: VoidRequest | None = None
        self._pings = 0
        self._stage: TrackingStage | None = None
        self._label: Label | None = None
        self._seen_pings = 0

    @workflow.run
    async def run(self, inp: ShipmentInput) -> ShipmentResult:
        self._label, self._stage = inp.label, inp.last_stage
        if self._label is None:
            bought = await self._buy_label(inp)
            if isinstance(bought, ShipmentResult):
                return bought
            self._label = bought
        return await self._follow(inp, self._label)

    async def _buy_label(self, inp: ShipmentInput) -> Label | ShipmentResult:
        workflow.set_current_details("choosing a rate")
        try:
            plan = await workflow.execute_activity_method(
                OrderRecordActivities.shipment_plan,
                OrderRef(order_id=inp.order_id),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_RETRY,
            )
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and err.cause.non_retryable:
                return await self._give_up(inp, ShipmentOutcome.CANNOT_SHIP, str(err.cause.message))
            raise
        if self._void is not None:
            return ShipmentResult(order_id=inp.order_id, outcome=ShipmentOutcome.CANCELLED)
        quoting = workflow.start_activity_method(
            ShippingActivities.quote_rates,
            plan,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
            summary=f"rates for {plan.weight_grams} g to {plan.ship_to.country}",
        )
        # Nothing is bought yet: a cancel need not wait for a slow or failing provider.
        await workflow.wait_condition(lambda: quoting.done() or self._void is not None)
        if not quoting.done():
            quoting.cancel()
            return ShipmentResult(order_id=inp.order_id, outcome=ShipmentOutcome.CANCELLED)
        quote = await quoting
        rate = choose_rate(quote.rates, plan.policy)
        if rate is None:
            detail = f"no rate matches the policy {plan.policy.model_dump(exclude_none=True)}"
            return await self._give_up(inp, ShipmentOutcome.NO_RATE, detail)
        if self._void is not None:
            return ShipmentResult(order_id=inp.order_id, outcome=ShipmentOutcome.CANCELLED)
        workflow.set_current_details(f"buying a {rate.carrier} {rate.service} label")
        try:
            label = await workflow.execute_activity_method(
                ShippingActivities.buy_label,
                BuyLabel(
                    order_id=inp.order_id, rate=rate, label_file_type=inp.config.label_file_type
                ),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
                summary=(
                    f"buy label {rate.carrier} {rate.service} "
                    f"{format_money(rate.amount, rate.currency)}"
                ),
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == errors.LABEL_REFUSED:
                return await self._give_up(inp, ShipmentOutcome.LABEL_REFUSED, str(cause.message))
            raise
        self._stage = TrackingStage.LABEL_PURCHASED
        await self._record(inp, label, TrackingStage.LABEL_PURCHASED, "label purchased")
        return label

    async def _follow(self, inp: ShipmentInput, label: Label) -> ShipmentResult:
        base = max(inp.config.tracking_poll_seconds, 1)
        interval = base
        self._seen_pings = self._pings
        # The first read is at once: a webhook sent before the label was recorded
        # could not find its order.
        first = inp.last_stage is None
        for _ in range(READS_PER_RUN):
            if self._void is not None and self._stage in VOIDABLE | {None}:
                voided = await self._void_label(inp, label)
                if voided is not None:
                    return voided
            stage = self._stage.value if self._stage else "-"
            workflow.set_current_details(f"{label.carrier} {label.tracking_number}: {stage}")
            try:
                if not first:
                    await workflow.wait_condition(
                        self._heard,
                        timeout=timedelta(seconds=interval),
                        timeout_summary="read tracking again",
                    )
            except TimeoutError:
                interval = min(interval * 2, base * MAX_POLL_BACKOFF)  # nothing heard: back off
            first = False
            if self._void is not None and self._stage in VOIDABLE | {None}:
                voided = await self._void_label(inp, label)
                if voided is not None:
                    return voided
            self._seen_pings = self._pings
            status = await workflow.execute_activity_method(
                ShippingActivities.get_tracking,
                TrackingQuery(carrier=label.carrier, tracking_number=label.tracking_number),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
                summary=f"track {label.tracking_number}",
            )
            if status.stage not in (self._stage, TrackingStage.UNKNOWN):
                self._stage = status.stage
                interval = base
                await self._record(inp, label, status.stage, status.detail)
            if self._stage in FINAL_TRACKING_STAGES:
                return ShipmentResult(
                    order_id=inp.order_id, outcome=OUTCOMES[self._stage], label=label
                )
        workflow.continue_as_new(inp.model_copy(update={"label": label, "last_stage": self._stage}))

    async def _void_label(self, inp: ShipmentInput, label: Label) -> ShipmentResult | None:
        """Void the label; None when the carrier has the parcel already (follow on)."""
        workflow.set_current_details("voiding the label")
        voided = await workflow.execute_activity_method(
            ShippingActivities.void_label,
            VoidLabel(order_id=inp.order_id, transaction_id=label.transaction_id),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
            summary=f"void label {label.tracking_number}",
        )
        if not voided:
            self._void = None
            self._pings += 1  # re-read at once: the parent learns the parcel has moved
            return None
        await self._store_record(
            ShipmentRecord(
                order_id=inp.order_id,
                status=ShipmentOutcome.VOIDED.value,
                carrier=label.carrier,
                service=label.service,
                tracking_number=label.tracking_number,
                label_url=label.label_url,
                transaction_id=label.transaction_id,
                detail="label voided: order cancelled",
            )
        )
        return ShipmentResult(order_id=inp.order_id, outcome=ShipmentOutcome.VOIDED, label=label)

    async def _give_up(
        self, inp: ShipmentInput, outcome: ShipmentOutcome, detail: str
    ) -> ShipmentResult:
        workflow.logger.error(
            "shipment cannot proceed",
            extra={"order_id": inp.order_id, "outcome": outcome.value, "detail": detail},
        )
        await self._store_record(
            ShipmentRecord(order_id=inp.order_id, status=outcome.value, detail=detail)
        )
        return ShipmentResult(order_id=inp.order_id, outcome=outcome, detail=detail)

    async def _record(
        self, inp: ShipmentInput, label: Label, stage: TrackingStage, detail: str
    ) -> None:
        await self._store_record(
            ShipmentRecord(
                order_id=inp.order_id,
                status=stage.value.lower(),
                carrier=label.carrier,
                service=label.service,
                tracking_number=label.tracking_number,
                label_url=label.label_url,
                transaction_id=label.transaction_id,
                detail=detail,
            )
        )
        parent = workflow.get_external_workflow_handle(inp.parent_workflow_id)
        try:
            await parent.signal(
                SHIPMENT_PROGRESS, ShipmentProgress(stage=stage, label=label, detail=detail)
            )
        except ApplicationError:
            workflow.logger.warning("parent gone", extra={"order_id": inp.order_id})

    async def _store_record(self, record: ShipmentRecord) -> None:
        await workflow.execute_activity_method(
            OrderRecordActivities.record_shipment,
            record,
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
            summary=f"shipment {record.status}",
        )

    def _heard(self) -> bool:
        return self._pings != self._seen_pings or self._void is not None

    @workflow.signal
    def tracking_changed(self, event: TrackingChanged) -> None:
        """A tracking webhook arrived: re-read the status from Shippo."""
        self._pings += 1

    @workflow.signal
    def void(self, req: VoidRequest) -> None:
        self._void = req

    @workflow.query
    def stage(self) -> str | None:
        return self._stage.value if self._stage else None
