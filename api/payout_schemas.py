"""Request and response models of the marketplace routes: sellers, checkouts, payouts and
their disputes (``api/routes/marketplace.py``, ``payouts.py``, ``ops.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas import ApiRequest, Currency, Text
from fulfil.messages.common import EMAIL_PATTERN
from fulfil.views import UtcDatetime


class SellerAccount(BaseModel):
    stripe_account: str


class CheckoutCreate(ApiRequest):
    listing: Text = Field(min_length=1, max_length=200, examples=["Hand-poured soy candle"])
    amount: int = Field(
        strict=True, ge=50, le=10**10, description="Minor units (cents), at least 50 (Stripe's)"
    )
    currency: Currency
    buyer_email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    payment_method: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$", examples=["pm_card_visa"]
    )


class CheckoutCreated(BaseModel):
    checkout_id: str
    payment_intent_id: str | None = Field(
        description="Null while the charge is still being made (read the payout for its fate)"
    )
    payout_id: str
    status: str = Field(description="The payout's status: holding once paid")


class PayoutPublic(BaseModel):
    payout_id: str
    status: str
    amount: int
    platform_fee: int
    seller_amount: int
    currency: str
    hold_until: UtcDatetime | None
    transfer_id: str | None
    source: str
    order_id: str | None
    checkout_id: str | None
    payment_intent_id: str | None
    dispute_id: str | None
    transfer_error: str | None = Field(description="Why the last transfer attempt failed")
    detail: str
    created_at: UtcDatetime
    released_at: UtcDatetime | None


class PayoutList(BaseModel):
    data: list[PayoutPublic] = Field(description="Newest first")
    has_more: bool


class DisputeCreate(ApiRequest):
    reason: Text = Field(min_length=1, max_length=500)


class DisputeResolve(ApiRequest):
    outcome: Literal["release", "refund"]


class PayoutRunTriggered(BaseModel):
    schedule: str
    triggered: bool = True
