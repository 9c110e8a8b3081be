"""The steps of an ``EscrowPayout`` (``workflows/escrow_payout.py``): each activity it runs,
with its input, timeouts and the summary ops see in the Temporal UI, and the records it keeps.

The charge of a checkout, the one transfer of the seller's share, a transfer's reversal, the
refund that ends a payout, ledger postings (idempotent per payout and ``what``) and status
records. Deciding when each happens (the hold, events, disputes) is the workflow's; this
module runs nothing at import and does no I/O outside activities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.order_records import OrderRecordActivities
    from activities.payouts import PayoutActivities
    from fulfil.enums import CustomerEmailKind, PayoutSource, PayoutStatus
    from fulfil.messages.orders import (
        OrderRef,
        OrderRefunded,
        StatusRecorded,
    )
    from fulfil.messages.payouts import (
        EscrowPayoutInput,
        PayoutCharge,
        PayoutPosting,
        PayoutRecord,
        PayoutRefundRequest,
        ReversalRequest,
        TransferRequest,
    )
    from fulfil.money import format_money
    from workflows import calls, policies

# Runs that mark their order refunded announce it (merchant webhook, customer email).
NOTIFY_ORDER_REFUNDED = "notify-order-refunded"


class PayoutSteps:
    """Base of ``EscrowPayout``: the payout's money and records, and the state they keep."""

    def __init__(self) -> None:
        self._inp: EscrowPayoutInput | None = None
        self._status = PayoutStatus.PENDING
        self._step = "starting"
        self._fee = 0
        self._hold_until: datetime | None = None
        self._payment_intent_id: str | None = None
        self._charge_id: str | None = None
        self._transfer_id: str | None = None
        self._transfers = 0  # transfers made (a reversed one is followed by :transfer:2)
        self._dispute_id: str | None = None
        self._released_once = False

    # --- money -----------------------------------------------------------------------------

    async def _charge_checkout(self, inp: EscrowPayoutInput) -> bool:
        assert inp.checkout is not None
        self._set_step(f"charging the buyer {format_money(inp.amount, inp.currency)}")
        result = await workflow.execute_activity_method(
            PayoutActivities.charge_checkout,
            PayoutCharge(
                payout_id=inp.payout_id,
                merchant_id=inp.merchant_id,
                amount=inp.amount,
                currency=inp.currency,
                checkout=inp.checkout,
            ),
            start_to_close_timeout=policies.PROVIDER_TIMEOUT,
            schedule_to_close_timeout=policies.PROVIDER_GIVE_UP,
            retry_policy=policies.PROVIDER_RETRY,
            summary=f"charge {format_money(inp.amount, inp.currency)}",
        )
        self._payment_intent_id = result.payment_intent_id or None
        self._charge_id = result.charge_id
        if result.status != "succeeded":
            why = result.decline or f"the payment is {result.status}"
            await self._record(PayoutStatus.FAILED, "payout.payment_failed", detail=why)
            return False
        await self._post("charge", inp.amount, 0, f"checkout {inp.checkout.checkout_id}")
        return True

    async def _release(self, inp: EscrowPayoutInput) -> None:
        """One transfer of the seller's share; retried with backoff until Stripe takes it."""
        seller = inp.amount - self._fee
        self._set_step(f"transferring {format_money(seller, inp.currency)} to {inp.stripe_account}")
        transfer = await workflow.execute_activity_method(
            PayoutActivities.transfer,
            TransferRequest(
                payout_id=inp.payout_id,
                amount=seller,
                currency=inp.currency,
                destination=inp.stripe_account,
                source_transaction=self._charge_id,
                attempt=self._transfers + 1,
            ),
            start_to_close_timeout=policies.PROVIDER_TIMEOUT,
            retry_policy=policies.transfer_retry(inp.config.transfer_retry_seconds),
            summary=f"transfer {format_money(seller, inp.currency)}",
        )
        self._transfers += 1
        self._transfer_id = transfer.transfer_id
        await self._post(
            f"transfer:{self._transfers}", seller, 0, f"transfer {transfer.transfer_id}"
        )
        self._released_once = True
        await self._record(PayoutStatus.RELEASED, "payout.released", transfer=True)

    async def _reverse_transfer(self) -> None:
        inp = self._input()
        assert self._transfer_id is not None
        self._set_step(f"reversing transfer {self._transfer_id}")
        reversal = await workflow.execute_activity_method(
            PayoutActivities.reverse_transfer,
            ReversalRequest(
                payout_id=inp.payout_id, transfer_id=self._transfer_id, attempt=self._transfers
            ),
            start_to_close_timeout=policies.PROVIDER_TIMEOUT,
            retry_policy=policies.PROVIDER_RETRY,
            summary=f"reverse {self._transfer_id}",
        )
        await self._post(
            f"reversal:{self._transfers}",
            inp.amount - self._fee,
            0,
            f"reversal {reversal.reversal_id} of {self._transfer_id}",
        )
        await self._record(
            PayoutStatus.RELEASED, "payout.transfer_reversed", reversal_id=reversal.reversal_id
        )
        self._transfer_id = None

    async def _end_refunded(self, detail: str, *, refunded: bool, refund_now: bool = False) -> None:
        """The buyer has (or now gets) the money back: nothing is paid out."""
        inp = self._input()
        if self._status == PayoutStatus.RELEASED and self._transfer_id is not None:
            await self._reverse_transfer()
        refund_id = None
        if refund_now:
            assert self._payment_intent_id is not None
            refund = await workflow.execute_activity_method(
                PayoutActivities.refund_payout,
                PayoutRefundRequest(
                    payout_id=inp.payout_id,
                    payment_intent_id=self._payment_intent_id,
                    amount=inp.amount,
                    reason=detail,
                    order_id=inp.order_id,
                ),
                start_to_close_timeout=policies.PROVIDER_TIMEOUT,
                retry_policy=policies.PROVIDER_RETRY,
                summary=f"refund {format_money(inp.amount, inp.currency)}",
            )
            refund_id = refund.refund_id
        await self._post("unsplit", inp.amount, self._fee, detail)
        if not refunded:
            # The money left the platform (refund or chargeback): posted once, with the
            # order's key for an order, so an order refund and this never both count.
            await self._post("refund", inp.amount, 0, detail)
            if inp.source == PayoutSource.ORDER and inp.order_id is not None:
                await self._db(
                    OrderRecordActivities.record_order_refunded,
                    OrderRefunded(
                        order_id=inp.order_id,
                        refund_id=refund_id,
                        amount=inp.amount,
                        currency=inp.currency,
                        detail=detail,
                    ),
                    summary="order refunded",
                )
                if workflow.patched(NOTIFY_ORDER_REFUNDED):
                    await self._announce_order_refunded(inp.order_id)
        await self._record(PayoutStatus.REFUNDED, "payout.refunded", detail=detail)

    async def _announce_order_refunded(self, order_id: str) -> None:
        """The order's ``refunded`` is a status change like any other: the merchant's webhook
        and the customer's email, as the order's own run sends them for its statuses."""
        ref = OrderRef(order_id=order_id)
        notice: StatusRecorded = await self._db(
            OrderRecordActivities.refund_notice, ref, summary="refund notice"
        )
        sending = [calls.email_customer(order_id, CustomerEmailKind.REFUNDED)]
        if notice.notify_merchant:
            sending.append(calls.merchant_webhook(order_id, notice.event_id, "refunded"))
        # A failed delivery is the notify queue's to report (parked endpoint); the refund stands.
        await asyncio.gather(*sending, return_exceptions=True)

    # --- records ---------------------------------------------------------------------------

    async def _db(
        self, activity: Callable[..., Awaitable[Any]], arg: Any, summary: str | None = None
    ) -> Any:
        return await calls.db(activity, arg, summary)

    async def _post(self, what: str, amount: int, fee: int, memo: str) -> None:
        inp = self._input()
        await self._db(
            PayoutActivities.post_payout,
            PayoutPosting(
                payout_id=inp.payout_id,
                what=what,
                amount=amount,
                fee=fee,
                currency=inp.currency,
                order_id=inp.order_id,
                memo=memo,
            ),
            summary=f"ledger: {what} {format_money(amount, inp.currency)}",
        )

    async def _record(
        self,
        status: PayoutStatus,
        event: str,
        *,
        detail: str = "",
        hold: bool = False,
        transfer: bool = False,
        reversal_id: str | None = None,
    ) -> None:
        self._status = status
        inp = self._input()
        await self._db(
            PayoutActivities.record_payout,
            PayoutRecord(
                payout_id=inp.payout_id,
                status=status,
                event=event,
                detail=detail,
                payment_intent_id=self._payment_intent_id,
                charge_id=self._charge_id,
                hold_until=self._hold_until.isoformat() if hold and self._hold_until else None,
                transfer_id=self._transfer_id if transfer else None,
                reversal_id=reversal_id,
                dispute_id=self._dispute_id,
            ),
            summary=f"payout {status.value}",
        )
        self._set_step(detail or status.value)

    def _set_step(self, step: str) -> None:
        self._step = step
        workflow.set_current_details(f"**{self._status.value}** · {step}")

    def _input(self) -> EscrowPayoutInput:
        assert self._inp is not None
        return self._inp

    def _payout_id(self) -> str:
        return self._inp.payout_id if self._inp else ""
