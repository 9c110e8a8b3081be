"""The money side of ``OrderPlacement`` (``workflows/order_placement.py``), its base class.

The customer's 3-D Secure wait (a ``payment_succeeded`` signal counts only once Stripe
confirms the payment), the payment's ledger record, the refund that is the charge's
compensation (it also tells the seller's payout), and the seller's share handed to an
``EscrowPayout`` child that outlives the order. When each runs (the saga, its endings,
cancel) is decided by ``OrderPlacement``; this module runs nothing at import.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.payments import PaymentActivities
    from fulfil.enums import FailureReason, PaymentStatus, PayoutSource
    from fulfil.ids import payout_workflow_id
    from fulfil.messages.orders import (
        OrderPlacementInput,
        PaymentRecord,
        PaymentSucceeded,
        RefundRecord,
        RefundRequest,
        VerifyPayment,
    )
    from fulfil.messages.payouts import ChargeRefunded, EscrowPayoutInput
    from fulfil.money import Totals, format_money
    from fulfil.temporal import PAYOUT_ID
    from workflows.escrow_payout import EscrowPayout
    from workflows.order_lifecycle import OrderLifecycle

# A version of OrderPlacement (runs in flight keep the path they started on).
VERIFY_PAYMENT_SIGNAL = "verify-payment-signal"


class OrderPayment(OrderLifecycle):
    """Mixin for ``OrderPlacement``: the payment, its refund and the seller's payout."""

    def __init__(self) -> None:
        super().__init__()
        self._totals: Totals | None = None
        self._payment_intent_id: str | None = None
        self._charge_id: str | None = None
        self._payment_confirmed: PaymentSucceeded | None = None
        self._failure_reason: FailureReason | None = None  # the refund's reason, once failed
        self._refunded = False
        self._payout: workflow.ChildWorkflowHandle[Any, Any] | None = None

    # --- payment -----------------------------------------------------------------

    async def _await_authentication(self, inp: OrderPlacementInput) -> PaymentSucceeded | None:
        """Wait for the customer's 3-D Secure; the confirmation, or None (timeout, cancel).

        The signal says only "look again": Stripe is asked whether the payment
        really succeeded before it counts (a forged signal changes nothing)."""
        self._set_step("waiting for the customer to authenticate the payment")
        verify = workflow.patched(VERIFY_PAYMENT_SIGNAL)
        deadline = workflow.now() + timedelta(seconds=inp.config.payment_action_timeout_seconds)
        while True:
            remaining = (deadline - workflow.now()).total_seconds()
            try:
                await workflow.wait_condition(
                    lambda: self._payment_confirmed is not None or self._cancel is not None,
                    timeout=timedelta(seconds=max(remaining, 0.001)),
                    timeout_summary="customer completes 3-D Secure",
                )
            except TimeoutError:
                return None
            claimed = self._payment_confirmed
            if claimed is None or not verify:
                return claimed
            assert self._payment_intent_id is not None
            self._set_step("checking the payment with Stripe")
            seen = await self._provider(
                PaymentActivities.verify_payment,
                VerifyPayment(order_id=self._order_id, payment_intent_id=self._payment_intent_id),
                summary="is the payment really succeeded?",
            )
            if seen.status == PaymentStatus.SUCCEEDED:
                return claimed.model_copy(update={"charge_id": seen.charge_id or claimed.charge_id})
            workflow.logger.warning(
                "payment signal not confirmed by Stripe",
                extra={"order_id": self._order_id, "stripe_status": seen.status},
            )
            self._payment_confirmed = None
            self._set_step("waiting for the customer to authenticate the payment")

    async def _record_payment(self, totals: Totals, status: str) -> None:
        assert self._payment_intent_id is not None
        await self._db(
            LedgerActivities.record_payment,
            PaymentRecord(
                order_id=self._order_id,
                payment_intent_id=self._payment_intent_id,
                status=status,
                charge_id=self._charge_id,
                amount=totals.total,
                currency=totals.currency,
            ),
        )

    async def _refund(self) -> None:
        """The charge's compensation: refunded, recorded, and the seller's payout told."""
        assert self._totals is not None
        assert self._payment_intent_id is not None
        refund = await self._provider(
            PaymentActivities.refund,
            RefundRequest(
                order_id=self._order_id,
                payment_intent_id=self._payment_intent_id,
                amount=self._totals.total,
                currency=self._totals.currency,
                reason=self._failure_reason or "cancelled",
            ),
            summary=f"refund {format_money(self._totals.total, self._totals.currency)}",
        )
        await self._db(
            LedgerActivities.record_refund,
            RefundRecord(order_id=self._order_id, refund=refund, currency=self._totals.currency),
        )
        self._refunded = True
        if self._payout is not None:
            try:
                await self._payout.signal(
                    EscrowPayout.charge_refunded,
                    ChargeRefunded(
                        refund_id=refund.refund_id, reason=self._failure_reason or "cancelled"
                    ),
                )
            except ApplicationError:
                workflow.logger.warning("payout already closed", extra={"order_id": self._order_id})

    # --- payout -------------------------------------------------------------------

    async def _start_payout(self, inp: OrderPlacementInput, totals: Totals) -> None:
        """The seller's share goes into escrow: its own workflow, which outlives the order."""
        assert inp.payout is not None
        self._payout = await workflow.start_child_workflow(
            EscrowPayout.run,
            EscrowPayoutInput(
                payout_id=inp.payout.payout_id,
                merchant_id=inp.merchant_id,
                stripe_account=inp.payout.stripe_account,
                source=PayoutSource.ORDER,
                amount=totals.total,
                currency=totals.currency,
                config=inp.payout.config,
                order_id=inp.order_id,
                payment_intent_id=self._payment_intent_id,
                charge_id=self._charge_id,
            ),
            id=payout_workflow_id(inp.payout.payout_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=self._payout_search_attributes(inp.payout.payout_id),
            static_summary=(
                f"Payout {inp.payout.payout_id} · order {inp.order_id} · "
                f"{format_money(totals.total, totals.currency)}"
            ),
        )

    def _payout_search_attributes(self, payout_id: str) -> TypedSearchAttributes | None:
        attributes = self._child_search_attributes()
        if attributes is None:
            return None
        return TypedSearchAttributes(
            [*attributes.search_attributes, SearchAttributePair(PAYOUT_ID, payout_id)]
        )
