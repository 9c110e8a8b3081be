"""OrderPlacement: price → can it ship? → reserve stock → charge → paid → ship → delivered; a saga.

An order that can never ship (no ship-from address, no rate for the merchant's
policy) fails before any money moves. Every step after the reservation pushes
its compensation; a failure runs them in reverse (refund, release stock),
records ``failed`` with a reason and tells the customer why. A 3-D Secure
payment completed by Stripe's webhook counts only once Stripe confirms it.
``cancel`` is a validated update, allowed until the parcel is in the carrier's
hands: before the label nothing is bought, after it the label is voided.
Workflow id: ``order-{order_id}``.

The steps on one screen (``_place``), the endings and the handlers are here;
the payment's 3-D Secure wait, its records and refund, and the seller's payout
are in the base class ``OrderPayment`` (``workflows/order_payment.py``), the
order status and shipping in ``OrderLifecycle``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.order_records import OrderRecordActivities
    from activities.payments import PaymentActivities
    from activities.shipping import ShippingActivities
    from fulfil import errors
    from fulfil.enums import (
        CANCELLABLE_ORDER_STATUSES,
        SHIPMENT_CANCELLED,
        SHIPMENT_UNAVAILABLE,
        TERMINAL_ORDER_STATUSES,
        CustomerEmailKind,
        FailureReason,
        OrderStatus,
        PaymentStatus,
    )
    from fulfil.messages.orders import (
        CancelOrder,
        CancelPayment,
        ChargeRequest,
        OrderPlacementInput,
        OrderProgress,
        OrderRef,
        OrderStatusChange,
        PaymentSucceeded,
        PricedOrder,
        PriceOrder,
    )
    from fulfil.money import Totals, format_money
    from fulfil.shipping import choose_rate
    from workflows import policies
    from workflows.order_payment import OrderPayment

FAILURE_REASONS = {
    errors.OUT_OF_STOCK: FailureReason.OUT_OF_STOCK,
    errors.PAYMENT_DECLINED: FailureReason.PAYMENT_DECLINED,
    errors.PAYMENT_REJECTED: FailureReason.PAYMENT_REJECTED,
}
# Versions of this workflow (runs in flight keep the path they started on); the
# payment's own, VERIFY_PAYMENT_SIGNAL, is in workflows/order_payment.py.
CHECK_SHIPPABLE = "check-shippable-before-charge"


def _failure_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _failure_message(err: ActivityError) -> str:
    return str(err.cause.message) if isinstance(err.cause, ApplicationError) else str(err)


@workflow.defn
class OrderPlacement(OrderPayment):
    def __init__(self) -> None:
        super().__init__()
        self._compensations: list[tuple[str, Callable[[], Awaitable[None]]]] = []

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
        priced: PricedOrder = await self._db(
            OrderRecordActivities.priced_order,
            PriceOrder(order_id=inp.order_id, shipping=inp.config.flat_shipping_amount),
            summary="read the prices fixed at placement",
        )
        self._totals = priced.totals
        if self._cancel is not None:
            return await self._finish_cancelled()

        if workflow.patched(CHECK_SHIPPABLE) and not await self._can_ship(ref):
            return await self._finish_failed(None, reason=FailureReason.SHIPPING_UNAVAILABLE)
        if self._cancel is not None:
            return await self._finish_cancelled()

        self._set_step("reserving stock")
        try:
            await self._db(InventoryActivities.reserve_stock, ref, summary="reserve stock")
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
            await self._db(InventoryActivities.commit_stock, ref, summary="commit stock")
        except ActivityError as err:
            return await self._finish_failed(err)
        await self._set_status(
            OrderStatus.PAID,
            "payment.succeeded",
            detail=f"charged {priced.totals.total} {priced.totals.currency}",
        )
        self._notify_customer(CustomerEmailKind.CONFIRMED)
        if inp.payout is not None:
            await self._start_payout(inp, priced.totals)
        if self._cancel is not None:
            return await self._finish_cancelled()

        shipment = await self._ship(inp.config.shipment)
        if shipment.outcome in SHIPMENT_CANCELLED:
            await self._finish_cancelled()
        elif shipment.outcome in SHIPMENT_UNAVAILABLE:
            await self._finish_failed(None, reason=FailureReason.SHIPPING_UNAVAILABLE)

    async def _can_ship(self, ref: OrderRef) -> bool:
        """Before any money moves: a ship-from address, a complete ship-to, and a rate the
        merchant's policy accepts. The Shipment quotes again when it buys the label."""
        self._set_step("checking the order can ship")
        try:
            plan = await self._db(
                OrderRecordActivities.shipment_plan, ref, summary="ship-from, ship-to, weight"
            )
            quote = await self._provider(
                ShippingActivities.quote_rates,
                plan,
                summary=f"rates for {plan.weight_grams} g to {plan.ship_to.country}",
                give_up=policies.PROVIDER_GIVE_UP,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "order cannot ship",
                extra={"order_id": self._order_id, "error": _failure_message(err)},
            )
            return False
        if choose_rate(quote.rates, plan.policy) is None:
            workflow.logger.warning(
                "no rate matches the merchant's policy", extra={"order_id": self._order_id}
            )
            return False
        return True

    async def _take_payment(self, inp: OrderPlacementInput, totals: Totals) -> bool:
        """Charge; True when paid. On failure the order is already finished."""
        if totals.total == 0:
            return True
        self._set_step("charging")
        try:
            charge = await self._provider(
                PaymentActivities.charge,
                ChargeRequest(
                    order_id=inp.order_id,
                    amount=totals.total,
                    currency=totals.currency,
                    payment_method=inp.payment_method,
                    merchant_id=inp.merchant_id,
                ),
                summary=f"charge {format_money(totals.total, totals.currency)}",
                give_up=policies.PROVIDER_GIVE_UP,
            )
        except ActivityError as err:
            await self._finish_failed(err)
            return False
        self._payment_intent_id = charge.payment_intent_id
        self._charge_id = charge.charge_id
        status = charge.status

        if status == PaymentStatus.REQUIRES_ACTION:
            await self._record_payment(totals, PaymentStatus.REQUIRES_ACTION)
            confirmed = await self._await_authentication(inp)
            if confirmed is not None:
                status = PaymentStatus.SUCCEEDED
                self._charge_id = confirmed.charge_id or self._charge_id
            else:
                self._set_step("cancelling the unauthenticated payment")
                final = await self._provider(
                    PaymentActivities.cancel_payment_intent,
                    CancelPayment(
                        order_id=inp.order_id, payment_intent_id=charge.payment_intent_id
                    ),
                    summary="cancel payment intent",
                )
                status = final.status  # "succeeded" if the customer won the race

        if status != PaymentStatus.SUCCEEDED:
            await self._record_payment(totals, status)
            if self._cancel is not None:
                await self._finish_cancelled()
            else:
                await self._finish_failed(None, reason=FailureReason.PAYMENT_TIMEOUT)
            return False

        await self._record_payment(totals, PaymentStatus.SUCCEEDED)
        self._compensations.append(("refund payment", self._refund))
        if self._cancel is not None:
            await self._finish_cancelled()
            return False
        return True

    # --- endings -----------------------------------------------------------

    async def _finish_failed(
        self, err: ActivityError | None, *, reason: FailureReason | None = None
    ) -> None:
        if err is not None:
            reason = FAILURE_REASONS.get(_failure_type(err) or "", FailureReason.FULFILMENT_ERROR)
            workflow.logger.warning(
                "order failed",
                extra={
                    "order_id": self._order_id,
                    "reason": reason,
                    "error": _failure_message(err),
                },
            )
        self._failure_reason = reason or FailureReason.FULFILMENT_ERROR
        await self._compensate()
        await self._set_status(
            OrderStatus.FAILED,
            "order.failed",
            detail=self._failure_reason.value,
            failure_reason=self._failure_reason,
        )
        self._notify_customer(CustomerEmailKind.FAILED)

    async def _finish_cancelled(self) -> None:
        await self._compensate()
        reason = self._cancel.reason if self._cancel else "cancelled"
        await self._set_status(OrderStatus.CANCELLED, "order.cancelled", detail=reason)
        self._notify_customer(
            CustomerEmailKind.CANCELLED,
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
                await self._db(
                    OrderRecordActivities.record_status,
                    OrderStatusChange(
                        order_id=self._order_id,
                        status=self._status,
                        event_type=f"compensation.failed.{name.replace(' ', '_')}",
                        detail=_failure_message(err),
                    ),
                )

    async def _release_stock(self) -> None:
        await self._db(
            InventoryActivities.release_stock,
            OrderRef(order_id=self._order_id),
            summary="release stock",
        )

    # --- handlers ------------------------------------------------------------

    @workflow.signal
    def payment_succeeded(self, event: PaymentSucceeded) -> None:
        """Stripe's ``payment_intent.succeeded`` webhook, relayed by the API (verified
        with Stripe before it counts)."""
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
