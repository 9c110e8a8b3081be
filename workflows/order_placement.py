"""OrderPlacement: price → reserve stock → charge → paid → ship → delivered; a saga.

Every step after the reservation pushes its compensation; a failure runs them
in reverse (refund, release stock), records ``failed`` with a reason and tells
the customer why. ``cancel`` is a validated update, allowed until the parcel
is in the carrier's hands: before the label nothing is bought, after it the
label is voided. Workflow id: ``order-{order_id}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from activities.store import StoreActivities
    from fulfil import errors
    from fulfil.models import (
        CANCELLABLE_ORDER_STATUSES,
        TERMINAL_ORDER_STATUSES,
        CancelOrder,
        CancelPayment,
        ChargeRequest,
        OrderPlacementInput,
        OrderProgress,
        OrderRef,
        OrderStatus,
        OrderStatusChange,
        PaymentRecord,
        PaymentSucceeded,
        PricedOrder,
        PriceOrder,
        RefundRecord,
        RefundRequest,
    )
    from fulfil.money import Totals
    from workflows.order_lifecycle import OrderLifecycle

PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=errors.NON_RETRYABLE,
)
PROVIDER_TIMEOUT = timedelta(seconds=30)
# A provider down this long fails the order (and compensates) instead of holding stock forever.
PROVIDER_GIVE_UP = timedelta(minutes=30)

FAILURE_REASONS = {
    errors.OUT_OF_STOCK: "out_of_stock",
    errors.PAYMENT_DECLINED: "payment_declined",
    errors.PAYMENT_REJECTED: "payment_rejected",
}
SHIPPING_FAILURES = frozenset({"no_rate", "label_refused", "cannot_ship"})


def _failure_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _failure_message(err: ActivityError) -> str:
    return str(err.cause.message) if isinstance(err.cause, ApplicationError) else str(err)


@workflow.defn
class OrderPlacement(OrderLifecycle):
    def __init__(self) -> None:
        super().__init__()
        self._totals: Totals | None = None
        self._payment_intent_id: str | None = None
        self._charge_id: str | None = None
        self._payment_confirmed: PaymentSucceeded | None = None
        self._failure_reason: str | None = None
        self._compensations: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._refunded = False

    # --- the run ---------------------------------------------------------

    @workflow.run
    async def run(self, inp: OrderPlacementInput) -> OrderProgress:
        self._order_id, self._merchant_id = inp.order_id, inp.merchant_id
        await self._place(inp)
        await self._drain_notifications()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    async def _place(self, inp: OrderPlacementInput) -> None:
        ref = OrderRef(order_id=inp.order_id)

        self._set_step("pricing")
        priced: PricedOrder = await self._store(
            StoreActivities.price_order,
            PriceOrder(order_id=inp.order_id, shipping=inp.config.flat_shipping_amount),
            summary="price items, discount and shipping",
        )
        self._totals = priced.totals
        if self._cancel is not None:
            return await self._finish_cancelled()

        self._set_step("reserving stock")
        try:
            await self._store(StoreActivities.reserve_stock, ref, summary="reserve stock")
        except ActivityError as err:
            return await self._finish_failed(err)
        self._compensations.append(("release stock", self._release_stock))
        await self._set_status(OrderStatus.AWAITING_PAYMENT, "payment.started")
        if self._cancel is not None:
            return await self._finish_cancelled()

        if not await self._take_payment(inp, priced.totals):
            return

        self._set_step("committing stock")
        try:
            await self._store(StoreActivities.commit_stock, ref, summary="commit stock")
        except ActivityError as err:
            return await self._finish_failed(err)
        await self._set_status(
            OrderStatus.PAID,
            "payment.succeeded",
            detail=f"charged {priced.totals.total} {priced.totals.currency}",
        )
        self._notify_customer("confirmed")
        if self._cancel is not None:
            return await self._finish_cancelled()

        shipment = await self._ship(inp.config.shipment)
        if shipment.outcome in ("voided", "cancelled"):
            await self._finish_cancelled()
        elif shipment.outcome in SHIPPING_FAILURES:
            await self._finish_failed(None, reason="shipping_unavailable")

    async def _take_payment(self, inp: OrderPlacementInput, totals: Totals) -> bool:
        """Charge; True when paid. On failure the order is already finished."""
        if totals.total == 0:
            return True
        self._set_step("charging")
        try:
            charge = await workflow.execute_activity_method(
                PaymentActivities.charge,
                ChargeRequest(
                    order_id=inp.order_id,
                    amount=totals.total,
                    currency=totals.currency,
                    payment_method=inp.payment_method,
                    merchant_id=inp.merchant_id,
                ),
                start_to_close_timeout=PROVIDER_TIMEOUT,
                schedule_to_close_timeout=PROVIDER_GIVE_UP,
                retry_policy=PROVIDER_RETRY,
                summary=f"charge {totals.total} {totals.currency}",
            )
        except ActivityError as err:
            await self._finish_failed(err)
            return False
        self._payment_intent_id = charge.payment_intent_id
        self._charge_id = charge.charge_id
        status = charge.status

        if status == "requires_action":
            await self._record_payment(totals, "requires_action")
            self._set_step("waiting for the customer to authenticate the payment")
            try:
                await workflow.wait_condition(
                    lambda: self._payment_confirmed is not None or self._cancel is not None,
                    timeout=timedelta(seconds=inp.config.payment_action_timeout_seconds),
                )
            except TimeoutError:
                pass
            if self._payment_confirmed is not None:
                status = "succeeded"
                self._charge_id = self._payment_confirmed.charge_id or self._charge_id
            else:
                self._set_step("cancelling the unauthenticated payment")
                final = await workflow.execute_activity_method(
                    PaymentActivities.cancel_payment_intent,
                    CancelPayment(
                        order_id=inp.order_id, payment_intent_id=charge.payment_intent_id
                    ),
                    start_to_close_timeout=PROVIDER_TIMEOUT,
                    retry_policy=PROVIDER_RETRY,
                    summary="cancel payment intent",
                )
                status = final.status  # "succeeded" if the customer won the race

        if status != "succeeded":
            await self._record_payment(totals, status)
            if self._cancel is not None:
                await self._finish_cancelled()
            else:
                await self._finish_failed(None, reason="payment_timeout")
            return False

        await self._record_payment(totals, "succeeded")
        self._compensations.append(("refund payment", self._refund))
        if self._cancel is not None:
            await self._finish_cancelled()
            return False
        return True

    # --- endings -----------------------------------------------------------

    async def _finish_failed(self, err: ActivityError | None, *, reason: str | None = None) -> None:
        if err is not None:
            failure_type = _failure_type(err)
            reason = FAILURE_REASONS.get(failure_type or "", "fulfilment_error")
            workflow.logger.warning(
                "order failed",
                extra={
                    "order_id": self._order_id,
                    "reason": reason,
                    "error": _failure_message(err),
                },
            )
        self._failure_reason = reason or "fulfilment_error"
        await self._compensate()
        await self._set_status(
            OrderStatus.FAILED,
            "order.failed",
            detail=self._failure_reason,
            failure_reason=self._failure_reason,
        )
        self._notify_customer("failed")

    async def _finish_cancelled(self) -> None:
        await self._compensate()
        reason = self._cancel.reason if self._cancel else "cancelled"
        await self._set_status(OrderStatus.CANCELLED, "order.cancelled", detail=reason)
        self._notify_customer(
            "cancelled",
            "Your payment has been refunded." if self._refunded else "Nothing was charged.",
        )

    async def _compensate(self) -> None:
        self._set_step("compensating")
        while self._compensations:
            name, undo = self._compensations.pop()
            try:
                await undo()
            except ActivityError as err:
                # Never silently: an event ops can see; the rest still runs.
                workflow.logger.error(
                    "compensation failed",
                    extra={
                        "order_id": self._order_id,
                        "step": name,
                        "error": _failure_message(err),
                    },
                )
                await self._store(
                    StoreActivities.record_status,
                    OrderStatusChange(
                        order_id=self._order_id,
                        status=self._status,
                        event_type=f"compensation.failed.{name.replace(' ', '_')}",
                        detail=_failure_message(err),
                    ),
                )

    async def _refund(self) -> None:
        assert self._totals is not None
        assert self._payment_intent_id is not None
        refund = await workflow.execute_activity_method(
            PaymentActivities.refund,
            RefundRequest(
                order_id=self._order_id,
                payment_intent_id=self._payment_intent_id,
                amount=self._totals.total,
                currency=self._totals.currency,
                reason=self._failure_reason or "cancelled",
            ),
            start_to_close_timeout=PROVIDER_TIMEOUT,
            retry_policy=PROVIDER_RETRY,
            summary=f"refund {self._totals.total} {self._totals.currency}",
        )
        await self._store(
            StoreActivities.record_refund,
            RefundRecord(order_id=self._order_id, refund=refund, currency=self._totals.currency),
        )
        self._refunded = True

    async def _release_stock(self) -> None:
        await self._store(
            StoreActivities.release_stock,
            OrderRef(order_id=self._order_id),
            summary="release stock",
        )

    async def _record_payment(self, totals: Totals, status: str) -> None:
        assert self._payment_intent_id is not None
        await self._store(
            StoreActivities.record_payment,
            PaymentRecord(
                order_id=self._order_id,
                payment_intent_id=self._payment_intent_id,
                status=status,
                charge_id=self._charge_id,
                amount=totals.total,
                currency=totals.currency,
            ),
        )

    # --- handlers ------------------------------------------------------------

    @workflow.signal
    def payment_succeeded(self, event: PaymentSucceeded) -> None:
        """Stripe's ``payment_intent.succeeded`` webhook, relayed by the API."""
        if self._payment_intent_id in (None, event.payment_intent_id):
            self._payment_confirmed = event

    @workflow.update
    async def cancel(self, req: CancelOrder) -> OrderProgress:
        if self._cancel is None:
            self._cancel = req
        await workflow.wait_condition(
            lambda: self._recorded_status in TERMINAL_ORDER_STATUSES or self._cancel_refused
        )
        if self._recorded_status != OrderStatus.CANCELLED:
            self._cancel_refused = False
            raise ApplicationError(
                f"order {self._order_id} is {self._status.value} and was not cancelled",
                type=errors.ORDER_NOT_CANCELLABLE,
            )
        return self.progress()

    @cancel.validator
    def _validate_cancel(self, req: CancelOrder) -> None:
        if self._status not in CANCELLABLE_ORDER_STATUSES:
            raise ApplicationError(
                f"order {self._order_id} is {self._status.value} and can no longer be cancelled",
                type=errors.ORDER_NOT_CANCELLABLE,
            )

    @workflow.query
    def progress(self) -> OrderProgress:
        return OrderProgress(
            order_id=self._order_id,
            status=self._status,
            step=self._step,
            payment_intent_id=self._payment_intent_id,
            failure_reason=self._failure_reason,
        )
