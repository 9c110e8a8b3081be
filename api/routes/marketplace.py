"""The marketplace: a seller's Stripe Connect account, and checkouts paid out in escrow.

``POST /api/seller/create-account`` calls Stripe at once (the answer is the account id),
idempotently per merchant. ``POST /api/checkout/create-session`` writes the checkout,
its payout and the outbox row that starts ``EscrowPayout`` in one transaction, then
waits briefly for the charge the workflow makes: the API itself moves no money.
``POST /api/checkout/webhook`` is Stripe's webhook under the marketplace's path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from http import HTTPStatus
from typing import Annotated

import stripe
from fastapi import APIRouter, BackgroundTasks, Header, Request, Response

from api.deps import IdempotencyKey, OwnerMerchant, ResourcesDep, SessionDep, SettingsDep
from api.payout_schemas import CheckoutCreate, CheckoutCreated, SellerAccount
from api.problems import Problem, conflict, problem_responses
from api.schemas import FieldError, WebhookReceipt
from api.webhooks.stripe import handle_stripe_webhook
from db import inbox, merchants, orders, outbox, payouts
from db.models import OutboxMessage
from fulfil.enums import PayoutSource, PayoutStatus
from fulfil.ids import (
    connect_account_idempotency_key,
    new_id,
    payout_workflow_id,
)
from fulfil.messages.payouts import CheckoutCharge, EscrowPayoutInput
from fulfil.money import format_money, split_fee
from fulfil.settings import Settings
from fulfil.temporal import MERCHANT_ID, PAYOUT_ID
from workflows.escrow_payout import EscrowPayout
from workflows.names import workflow_name

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api",
    tags=["marketplace"],
    responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
)

POLL_INTERVAL = 0.05


@router.post(
    "/seller/create-account",
    status_code=HTTPStatus.CREATED,
    summary="Create the calling merchant's Stripe Connect account (owner)",
    description="Idempotent: a merchant that has an account gets it back.",
    responses=problem_responses(HTTPStatus.BAD_GATEWAY),
)
async def create_seller_account(
    merchant: OwnerMerchant, session: SessionDep, resources: ResourcesDep
) -> SellerAccount:
    if merchant.stripe_account:
        return SellerAccount(stripe_account=merchant.stripe_account)
    try:
        account = await resources.stripe.v1.accounts.create_async(
            {
                "type": "express",
                "email": merchant.email,
                "business_profile": {"name": merchant.name},
                "capabilities": {"transfers": {"requested": True}},
                "metadata": {"merchant_id": merchant.id},
            },
            {"idempotency_key": connect_account_idempotency_key(merchant.id)},
        )
    except stripe.StripeError as err:
        log.warning("stripe refused the account", extra={"merchant_id": merchant.id})
        raise Problem(
            HTTPStatus.BAD_GATEWAY,
            f"Stripe did not create the account: {err.user_message or type(err).__name__}",
            slug="provider-error",
        ) from err
    await merchants.update_merchant(session, merchant, {"stripe_account": account.id})
    return SellerAccount(stripe_account=account.id)


def _request_hash(body: CheckoutCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@router.post(
    "/checkout/create-session",
    status_code=HTTPStatus.CREATED,
    summary="Charge a buyer for a listing of the calling seller, paid out in escrow (owner)",
    description="Starts the payout's workflow, which charges the buyer with a separate charge "
    "in the payout's `transfer_group` and holds the seller's share "
    "(amount minus the platform fee) for `PAYOUT_HOLD_SECONDS`. Answers once the charge is "
    "made (or after a few seconds: then `payment_intent_id` is null and the payout tells the "
    "rest). A declined card is 402. The same `Idempotency-Key` and body return the same "
    "checkout.",
    responses=problem_responses(
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.PAYMENT_REQUIRED,
        HTTPStatus.CONFLICT,
        HTTPStatus.UNPROCESSABLE_ENTITY,
    ),
)
async def create_checkout_session(
    body: CheckoutCreate,
    merchant: OwnerMerchant,
    idempotency_key: IdempotencyKey,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
) -> CheckoutCreated:
    if not merchant.stripe_account:
        raise conflict(
            "no-seller-account",
            "This merchant has no Stripe Connect account: POST /api/seller/create-account first.",
            [FieldError(field="stripe_account", message="missing")],
        )
    digest = _request_hash(body)
    record = await orders.get_idempotency_record(session, merchant.id, idempotency_key)
    if record is None:
        checkout_id, payout_id = new_id("chk"), new_id("pay")
        if await orders.claim_idempotency_key(
            session,
            merchant_id=merchant.id,
            key=idempotency_key,
            request_hash=digest,
            resource_id=checkout_id,
        ):
            outbox_id = await _open_checkout(
                session,
                settings,
                merchant.id,
                merchant.stripe_account,
                body,
                checkout_id,
                payout_id,
            )
            await session.commit()  # nothing is lost now: the relay has the start
            await resources.dispatch.dispatch_now([outbox_id])
            return await _answer(resources, checkout_id, payout_id, settings.checkout_wait_seconds)
        record = await orders.get_idempotency_record(session, merchant.id, idempotency_key)
        if record is None:
            raise conflict(
                "idempotency-key-in-use",
                "Another request with this Idempotency-Key is in progress; retry.",
            )
    if record.request_hash != digest:
        raise Problem(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "This Idempotency-Key was used with a different request body.",
            slug="idempotency-key-reused",
            errors=[FieldError(field="Idempotency-Key", message="used with a different body")],
        )
    checkout = await payouts.get_checkout(session, record.resource_id)
    if checkout is None:
        raise conflict("idempotency-key-in-use", "This Idempotency-Key belongs to an order.")
    return await _answer(resources, checkout.id, checkout.payout_id, settings.checkout_wait_seconds)


async def _open_checkout(
    session: SessionDep,
    settings: Settings,
    merchant_id: str,
    stripe_account: str,
    body: CheckoutCreate,
    checkout_id: str,
    payout_id: str,
) -> int:
    fee, _ = split_fee(body.amount, settings.platform_fee_bps)
    await payouts.create_checkout(
        session,
        checkout_id=checkout_id,
        merchant_id=merchant_id,
        payout_id=payout_id,
        listing=body.listing,
        amount=body.amount,
        currency=body.currency,
        buyer_email=body.buyer_email,
        payment_method=body.payment_method,
    )
    await payouts.create_payout(
        session,
        payout_id=payout_id,
        merchant_id=merchant_id,
        source=PayoutSource.CHECKOUT.value,
        stripe_account=stripe_account,
        amount=body.amount,
        platform_fee=fee,
        currency=body.currency,
        status=PayoutStatus.PENDING,
        checkout_id=checkout_id,
    )
    return await inbox.add_outbox_message(
        session, start_payout(settings, merchant_id, stripe_account, body, checkout_id, payout_id)
    )


def start_payout(
    settings: Settings,
    merchant_id: str,
    stripe_account: str,
    body: CheckoutCreate,
    checkout_id: str,
    payout_id: str,
) -> OutboxMessage:
    inp = EscrowPayoutInput(
        payout_id=payout_id,
        merchant_id=merchant_id,
        stripe_account=stripe_account,
        source=PayoutSource.CHECKOUT,
        amount=body.amount,
        currency=body.currency,
        config=settings.payout_config(),
        checkout=CheckoutCharge(
            checkout_id=checkout_id,
            payment_method=body.payment_method,
            buyer_email=body.buyer_email,
            listing=body.listing,
        ),
    )
    return outbox.start_message(
        workflow_name(EscrowPayout.run),
        payout_workflow_id(payout_id),
        inp.model_dump(mode="json"),
        search_attributes={MERCHANT_ID.name: merchant_id, PAYOUT_ID.name: payout_id},
        summary=f"Payout {payout_id} · checkout {checkout_id} · "
        f"{format_money(body.amount, body.currency)} · {body.listing}",
        task_queue=settings.task_queue,
    )


async def _answer(
    resources: ResourcesDep, checkout_id: str, payout_id: str, wait: float
) -> CheckoutCreated:
    """Once the payout knows the charge (or after ``wait`` seconds)."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        async with resources.sessionmaker() as session:
            payout = await payouts.get_payout(session, payout_id)
        assert payout is not None
        if payout.status == PayoutStatus.FAILED.value:
            raise Problem(
                HTTPStatus.PAYMENT_REQUIRED,
                f"The payment failed: {payout.detail or 'declined'}",
                slug="payment-declined",
                extra={"checkout_id": checkout_id, "payout_id": payout_id},
            )
        if payout.payment_intent_id or asyncio.get_running_loop().time() >= deadline:
            return CheckoutCreated(
                checkout_id=checkout_id,
                payment_intent_id=payout.payment_intent_id,
                payout_id=payout_id,
                status=payout.status,
            )
        await asyncio.sleep(POLL_INTERVAL)


@router.post(
    "/checkout/webhook",
    summary="Stripe events for the marketplace (the same as /webhooks/stripe)",
    responses=problem_responses(HTTPStatus.BAD_REQUEST),
    response_model=WebhookReceipt,
    response_model_exclude_none=True,
)
async def checkout_webhook(
    request: Request,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookReceipt | Response:
    return await handle_stripe_webhook(request, settings, resources, background, stripe_signature)
