"""OrderPlacement's messages, and the order records every order workflow writes.

Workflow id ``order-{order_id}``. The records (status changes, payments,
refunds, customer emails, merchant webhooks) are shared with TikTokFulfillment.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from fulfil.enums import (
    CustomerEmailKind,
    FailureReason,
    OrderStatus,
    PaymentStatus,
)
from fulfil.messages.payouts import PayoutConfig
from fulfil.messages.shipment import ShipmentConfig
from fulfil.money import PricedLine, Totals


class OrderConfig(BaseModel):
    """Configuration the workflow needs, captured at start (workflows read no env)."""

    flat_shipping_amount: int
    payment_action_timeout_seconds: int
    shipment: ShipmentConfig = Field(default_factory=lambda: ShipmentConfig())


class OrderPayout(BaseModel):
    """The merchant sells through Stripe Connect: once paid, the order starts its payout."""

    payout_id: str
    stripe_account: str
    config: PayoutConfig


class OrderPlacementInput(BaseModel):
    order_id: str
    merchant_id: str
    payment_method: str
    config: OrderConfig
    payout: OrderPayout | None = None


class OrderRef(BaseModel):
    order_id: str


class PriceOrder(BaseModel):
    order_id: str
    shipping: int


class PricedOrder(BaseModel):
    order_id: str
    lines: list[PricedLine]
    totals: Totals


class ChargeRequest(BaseModel):
    order_id: str
    amount: int
    currency: str
    payment_method: str
    merchant_id: str


class ChargeResult(BaseModel):
    payment_intent_id: str
    status: str  # Stripe's PaymentIntent status: succeeded | requires_action | canceled ...
    charge_id: str | None = None


class PaymentSucceeded(BaseModel):
    """Signal: Stripe says the payment succeeded (webhook). Re-verified before it counts."""

    payment_intent_id: str
    charge_id: str | None = None


class VerifyPayment(BaseModel):
    order_id: str
    payment_intent_id: str


class CancelOrder(BaseModel):
    """Update: the merchant cancels the order."""

    reason: str = "requested_by_merchant"


class OrderStatusChange(BaseModel):
    order_id: str
    status: OrderStatus
    event_type: str
    detail: str = ""
    failure_reason: FailureReason | None = None


class StatusRecorded(BaseModel):
    event_id: int
    notify_merchant: bool = False


class RefundRequest(BaseModel):
    order_id: str
    payment_intent_id: str
    amount: int
    currency: str
    reason: str


class RefundResult(BaseModel):
    refund_id: str
    amount: int


class PaymentRecord(BaseModel):
    order_id: str
    payment_intent_id: str
    status: PaymentStatus | str  # Stripe may name a status we do not model
    charge_id: str | None = None
    amount: int
    currency: str


class RefundRecord(BaseModel):
    order_id: str
    refund: RefundResult
    currency: str


class CancelPayment(BaseModel):
    order_id: str
    payment_intent_id: str


class CustomerEmail(BaseModel):
    order_id: str
    kind: CustomerEmailKind
    detail: str = ""


class MerchantWebhook(BaseModel):
    order_id: str
    event_id: int


class OrderProgress(BaseModel):
    """Query result: the live view of a run."""

    order_id: str
    status: OrderStatus
    step: str
    payment_intent_id: str | None = None
    failure_reason: FailureReason | None = None


class OrderRefunded(BaseModel):
    """An order's payment was given back after it was fulfilled (its payout was refunded
    or a dispute was lost): the order ends ``refunded``."""

    order_id: str
    refund_id: str | None
    amount: int
    currency: str
    detail: str = ""
