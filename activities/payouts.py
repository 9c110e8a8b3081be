"""Payout activities: the payout's read model and ledger (PostgreSQL) and its Stripe Connect
calls (checkout charge, transfer, reversal, refund, dispute checks).

Every Stripe call carries an idempotency key from the payout id
(``payout:{id}:transfer`` ...), so a retry or a restarted worker never moves money twice; a
payout paid by a storefront order refunds with the order's own key, so the order and its
payout can never both refund it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import stripe
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import payouts
from fulfil import errors
from fulfil.enums import PayoutStatus
from fulfil.ids import (
    payout_charge_idempotency_key,
    payout_refund_idempotency_key,
    payout_reversal_idempotency_key,
    payout_transfer_group,
    payout_transfer_idempotency_key,
    refund_idempotency_key,
)
from fulfil.messages.orders import RefundResult
from fulfil.messages.payouts import (
    DisputeCheck,
    DisputeState,
    EscrowPayoutInput,
    PayoutCharge,
    PayoutChargeResult,
    PayoutPosting,
    PayoutRecord,
    PayoutRefundRequest,
    PayoutReleaseInput,
    ReleasablePayouts,
    ReversalRequest,
    ReversalResult,
    TransferRequest,
    TransferResult,
)
from fulfil.money import split_fee

log = logging.getLogger(__name__)


def _id_of(value: Any) -> str | None:
    return value if isinstance(value, str) else getattr(value, "id", None)


class PayoutActivities:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], client: stripe.StripeClient
    ) -> None:
        self._sessionmaker = sessionmaker
        self._stripe = client

    # --- PostgreSQL -----------------------------------------------------------------

    @activity.defn
    async def open_payout(self, inp: EscrowPayoutInput) -> None:
        """The payout's row (a checkout's exists already: then nothing changes)."""
        fee, _ = split_fee(inp.amount, inp.config.fee_bps)
        async with self._sessionmaker.begin() as session:
            await payouts.create_payout(
                session,
                payout_id=inp.payout_id,
                merchant_id=inp.merchant_id,
                source=inp.source.value,
                stripe_account=inp.stripe_account,
                amount=inp.amount,
                platform_fee=fee,
                currency=inp.currency,
                status=PayoutStatus.PENDING if inp.checkout else PayoutStatus.HOLDING,
                order_id=inp.order_id,
                checkout_id=inp.checkout.checkout_id if inp.checkout else None,
                payment_intent_id=inp.payment_intent_id,
                charge_id=inp.charge_id,
            )

    @activity.defn
    async def record_payout(self, change: PayoutRecord) -> None:
        """The payout's status, and the ids that came with it, on its read model."""
        values: dict[str, Any] = {"status": change.status.value, "detail": change.detail}
        for name in ("payment_intent_id", "charge_id", "transfer_id", "reversal_id", "dispute_id"):
            value = getattr(change, name)
            if value is not None:
                values[name] = value
        if change.hold_until is not None:
            values["hold_until"] = datetime.fromisoformat(change.hold_until)
        if change.status == PayoutStatus.RELEASED:
            values["released_at"] = func.now()
            values["transfer_error"] = None
        if change.transfer_error is not None:
            values["transfer_error"] = change.transfer_error[:1000]
        async with self._sessionmaker.begin() as session:
            payout = await payouts.get_payout(session, change.payout_id, lock=True)
            if payout is None:
                raise ApplicationError(
                    f"payout {change.payout_id} not found",
                    type=errors.ORDER_NOT_FOUND,
                    non_retryable=True,
                )
            await payouts.record(session, payout, values)
        log.info(
            "payout recorded",
            extra={
                "payout_id": change.payout_id,
                "status": change.status.value,
                "event": change.event,
            },
        )

    @activity.defn
    async def post_payout(self, posting: PayoutPosting) -> None:
        """One double-entry posting of the payout; posting it again changes nothing."""
        async with self._sessionmaker.begin() as session:
            payout = await payouts.get_payout(session, posting.payout_id)
            if payout is None:
                raise ApplicationError(
                    f"payout {posting.payout_id} not found",
                    type=errors.ORDER_NOT_FOUND,
                    non_retryable=True,
                )
            await payouts.post(
                session,
                payout,
                posting.what,
                amount=posting.amount,
                fee=posting.fee,
                memo=posting.memo,
            )

    @activity.defn
    async def releasable_payouts(self, req: PayoutReleaseInput) -> ReleasablePayouts:
        async with self._sessionmaker() as session:
            return ReleasablePayouts(payout_ids=await payouts.releasable_ids(session, req.batch))

    # --- Stripe -----------------------------------------------------------------------

    @activity.defn
    async def charge_checkout(self, req: PayoutCharge) -> PayoutChargeResult:
        """Charge the buyer on the platform (a separate charge), grouped for the transfer."""
        try:
            intent = await self._stripe.v1.payment_intents.create_async(
                {
                    "amount": req.amount,
                    "currency": req.currency.lower(),
                    "payment_method": req.checkout.payment_method,
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                    "confirm": True,
                    "transfer_group": payout_transfer_group(req.payout_id),
                    "receipt_email": req.checkout.buyer_email,
                    "description": f"Checkout {req.checkout.checkout_id}: {req.checkout.listing}"[
                        :200
                    ],
                    "metadata": {
                        "payout_id": req.payout_id,
                        "checkout_id": req.checkout.checkout_id,
                        "merchant_id": req.merchant_id,
                    },
                },
                {"idempotency_key": payout_charge_idempotency_key(req.payout_id)},
            )
        except stripe.CardError as err:
            intent_of_error = getattr(err.error, "payment_intent", None) if err.error else None
            return PayoutChargeResult(
                payment_intent_id=_id_of(intent_of_error) or "",
                status="declined",
                decline=err.user_message or err.code or "card_declined",
            )
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as err:
            raise ApplicationError(
                f"stripe rejected the checkout charge: {err.user_message or type(err).__name__}",
                type=errors.PAYMENT_REJECTED,
                non_retryable=True,
            ) from None
        return PayoutChargeResult(
            payment_intent_id=intent.id,
            status=intent.status,
            charge_id=_id_of(intent.latest_charge),
        )

    @activity.defn
    async def transfer(self, req: TransferRequest) -> TransferResult:
        """The seller's share to its Connect account, once per release.

        A seller that cannot receive it (a restricted account) fails this attempt;
        Temporal retries with backoff, the payout's row shows why, and other payouts
        are not held up (each payout is a workflow of its own)."""
        params: stripe.params.TransferCreateParams = {
            "amount": req.amount,
            "currency": req.currency.lower(),
            "destination": req.destination,
            "transfer_group": payout_transfer_group(req.payout_id),
            "metadata": {"payout_id": req.payout_id},
        }
        if req.source_transaction:
            params["source_transaction"] = req.source_transaction
        try:
            transfer = await self._stripe.v1.transfers.create_async(
                params,
                {"idempotency_key": payout_transfer_idempotency_key(req.payout_id, req.attempt)},
            )
        except (stripe.InvalidRequestError, stripe.PermissionError) as err:
            reason = f"{err.code or type(err).__name__}: {err.user_message or ''}".strip()
            await self._transfer_failed(req.payout_id, reason)
            raise ApplicationError(f"transfer refused: {reason}", type=TRANSFER_REFUSED) from None
        log.info(
            "payout transferred",
            extra={"payout_id": req.payout_id, "transfer_id": transfer.id, "amount": req.amount},
        )
        return TransferResult(transfer_id=transfer.id, amount=transfer.amount)

    async def _transfer_failed(self, payout_id: str, reason: str) -> None:
        async with self._sessionmaker.begin() as session:
            payout = await payouts.get_payout(session, payout_id, lock=True)
            if payout is not None:
                await payouts.record(session, payout, {"transfer_error": reason[:1000]})
        log.warning("payout transfer refused", extra={"payout_id": payout_id, "error": reason})

    @activity.defn
    async def reverse_transfer(self, req: ReversalRequest) -> ReversalResult:
        reversal = await self._stripe.v1.transfers.reversals.create_async(
            req.transfer_id,
            {"metadata": {"payout_id": req.payout_id}},
            {"idempotency_key": payout_reversal_idempotency_key(req.payout_id, req.attempt)},
        )
        log.info(
            "payout transfer reversed",
            extra={"payout_id": req.payout_id, "reversal_id": reversal.id},
        )
        return ReversalResult(reversal_id=reversal.id, amount=reversal.amount)

    @activity.defn
    async def refund_payout(self, req: PayoutRefundRequest) -> RefundResult:
        """Refund the buyer; an order's payout uses the order's key (one refund, whoever asks)."""
        key = (
            refund_idempotency_key(req.order_id)
            if req.order_id
            else payout_refund_idempotency_key(req.payout_id)
        )
        try:
            refund = await self._stripe.v1.refunds.create_async(
                {
                    "payment_intent": req.payment_intent_id,
                    "amount": req.amount,
                    "reason": "requested_by_customer",
                    "metadata": {"payout_id": req.payout_id, "reason": req.reason[:200]},
                },
                {"idempotency_key": key},
            )
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as err:
            raise ApplicationError(
                f"stripe refused the refund: {err.user_message or type(err).__name__}",
                type=errors.PAYMENT_REJECTED,
                non_retryable=True,
            ) from None
        return RefundResult(refund_id=refund.id, amount=refund.amount)

    @activity.defn
    async def check_dispute(self, req: DisputeCheck) -> DisputeState:
        """What Stripe says of a dispute: a webhook alone is never believed."""
        try:
            dispute = await self._stripe.v1.disputes.retrieve_async(req.dispute_id)
        except stripe.InvalidRequestError:
            return DisputeState(dispute_id=req.dispute_id, status="unknown")
        return DisputeState(
            dispute_id=dispute.id,
            status=dispute.status,
            charge_id=_id_of(dispute.charge),
            payment_intent_id=_id_of(dispute.payment_intent),
            amount=dispute.amount,
        )

    @activity.defn
    async def accept_dispute(self, req: DisputeCheck) -> DisputeState:
        """Concede a dispute at Stripe (ops chose to refund): the buyer keeps the money."""
        dispute = await self._stripe.v1.disputes.close_async(req.dispute_id)
        return DisputeState(
            dispute_id=dispute.id,
            status=dispute.status,
            charge_id=_id_of(dispute.charge),
            payment_intent_id=_id_of(dispute.payment_intent),
            amount=dispute.amount,
        )


TRANSFER_REFUSED = "TransferRefused"
