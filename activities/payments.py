"""Stripe activities. Idempotency keys come from business ids, never from run ids."""

from __future__ import annotations

import logging

import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from fulfil import errors
from fulfil.ids import (
    cancel_payment_idempotency_key,
    charge_idempotency_key,
    refund_idempotency_key,
)
from fulfil.messages.orders import (
    CancelPayment,
    ChargeRequest,
    ChargeResult,
    RefundRequest,
    RefundResult,
    VerifyPayment,
)
from fulfil.settings import Settings

log = logging.getLogger(__name__)


def build_stripe(settings: Settings) -> stripe.StripeClient:
    base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses=base,  # type: ignore[arg-type]
        http_client=stripe.HTTPXClient(),
        max_network_retries=0,  # Temporal retries, with the same idempotency key
    )


def _rejected(err: stripe.StripeError) -> ApplicationError:
    """A request Stripe will never accept as sent: retrying cannot help."""
    return ApplicationError(
        f"stripe rejected the request: {err.user_message or type(err).__name__}",
        type=errors.PAYMENT_REJECTED,
        non_retryable=True,
    )


class PaymentActivities:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._stripe = client

    @activity.defn
    async def charge(self, req: ChargeRequest) -> ChargeResult:
        """Create and confirm the PaymentIntent; the same order never charges twice."""
        try:
            intent = await self._stripe.v1.payment_intents.create_async(
                {
                    "amount": req.amount,
                    "currency": req.currency.lower(),
                    "payment_method": req.payment_method,
                    # Server-side confirmation: no redirect-based methods, so no return_url.
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                    "confirm": True,
                    "description": f"Order {req.order_id}",
                    "metadata": {"order_id": req.order_id, "merchant_id": req.merchant_id},
                },
                {"idempotency_key": charge_idempotency_key(req.order_id)},
            )
        except stripe.CardError as err:
            log.info(
                "payment declined",
                extra={"order_id": req.order_id, "decline_code": err.code},
            )
            raise ApplicationError(
                err.user_message or "the card was declined",
                err.code or "card_declined",
                type=errors.PAYMENT_DECLINED,
                non_retryable=True,
            ) from None
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as err:
            raise _rejected(err) from None
        log.info(
            "payment intent confirmed",
            extra={
                "order_id": req.order_id,
                "payment_intent_id": intent.id,
                "status": intent.status,
            },
        )
        latest = intent.latest_charge
        return ChargeResult(
            payment_intent_id=intent.id,
            status=intent.status,
            charge_id=latest if isinstance(latest, str) else getattr(latest, "id", None),
        )

    @activity.defn
    async def refund(self, req: RefundRequest) -> RefundResult:
        try:
            refund = await self._stripe.v1.refunds.create_async(
                {
                    "payment_intent": req.payment_intent_id,
                    "amount": req.amount,
                    "reason": "requested_by_customer",
                    "metadata": {"order_id": req.order_id, "reason": req.reason},
                },
                {"idempotency_key": refund_idempotency_key(req.order_id)},
            )
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as err:
            raise _rejected(err) from None
        log.info("payment refunded", extra={"order_id": req.order_id, "refund_id": refund.id})
        return RefundResult(refund_id=refund.id, amount=refund.amount)

    @activity.defn
    async def cancel_payment_intent(self, req: CancelPayment) -> ChargeResult:
        """Give up on a payment that never completed (e.g. 3-D Secure abandoned).

        Returns the final status: ``succeeded`` when the customer completed it
        meanwhile (then the order is paid after all), else ``canceled``.
        """
        intent = await self._stripe.v1.payment_intents.retrieve_async(req.payment_intent_id)
        if intent.status in ("canceled", "succeeded"):
            return ChargeResult(payment_intent_id=intent.id, status=intent.status)
        try:
            intent = await self._stripe.v1.payment_intents.cancel_async(
                req.payment_intent_id,
                {"cancellation_reason": "abandoned"},
                {"idempotency_key": cancel_payment_idempotency_key(req.order_id)},
            )
        except stripe.InvalidRequestError as err:
            raise _rejected(err) from None
        return ChargeResult(payment_intent_id=intent.id, status=intent.status)

    @activity.defn
    async def verify_payment(self, req: VerifyPayment) -> ChargeResult:
        """What Stripe says of the PaymentIntent now: a signal claiming it succeeded is
        believed only if Stripe agrees (anyone who can signal the run could forge one)."""
        intent = await self._stripe.v1.payment_intents.retrieve_async(req.payment_intent_id)
        metadata = intent.metadata.to_dict() if intent.metadata else {}
        order_id = metadata.get("order_id")
        if order_id != req.order_id:
            log.warning(
                "payment intent belongs to another order",
                extra={"order_id": req.order_id, "payment_intent_id": req.payment_intent_id},
            )
            return ChargeResult(payment_intent_id=intent.id, status="foreign")
        latest = intent.latest_charge
        return ChargeResult(
            payment_intent_id=intent.id,
            status=intent.status,
            charge_id=latest if isinstance(latest, str) else getattr(latest, "id", None),
        )
