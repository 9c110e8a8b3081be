"""Pydantic models shared by the API, the workflows and the activities.

One model per workflow/activity/signal/update input so fields can be added
later without breaking recorded histories.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from fulfil.money import PricedLine, Totals


class OrderStatus(StrEnum):
    PENDING = "pending"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    FULFILLING = "fulfilling"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"
    REFUNDED = "refunded"


TERMINAL_ORDER_STATUSES = frozenset(
    {OrderStatus.DELIVERED, OrderStatus.CANCELLED, OrderStatus.FAILED, OrderStatus.REFUNDED}
)
CANCELLABLE_ORDER_STATUSES = frozenset(
    {OrderStatus.PENDING, OrderStatus.AWAITING_PAYMENT, OrderStatus.PAID, OrderStatus.FULFILLING}
)


class OrderSource(StrEnum):
    STOREFRONT = "storefront"
    TIKTOK = "tiktok"


class Address(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    street1: str = Field(min_length=1, max_length=200)
    street2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: str = Field(default="", max_length=100)
    zip: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)


class Customer(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    name: str = Field(min_length=1, max_length=200)


class ShippingPolicy(BaseModel):
    rate: str = Field(default="cheapest", pattern="^(cheapest|fastest)$")
    carriers: list[str] | None = None


# --- OrderPlacement -------------------------------------------------------


class OrderConfig(BaseModel):
    """Configuration the workflow needs, captured at start (workflows read no env)."""

    flat_shipping_amount: int
    payment_action_timeout_seconds: int
    shipment: ShipmentConfig = Field(default_factory=lambda: ShipmentConfig())


class OrderPlacementInput(BaseModel):
    order_id: str
    merchant_id: str
    payment_method: str
    config: OrderConfig


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
    status: str  # succeeded | requires_action
    charge_id: str | None = None


class PaymentSucceeded(BaseModel):
    """Signal: Stripe confirmed the payment (webhook)."""

    payment_intent_id: str
    charge_id: str | None = None


class CancelOrder(BaseModel):
    """Update: the merchant cancels the order."""

    reason: str = "requested_by_merchant"


class OrderStatusChange(BaseModel):
    order_id: str
    status: OrderStatus
    event_type: str
    detail: str = ""
    failure_reason: str | None = None


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
    status: str  # the PaymentIntent status: requires_action | succeeded | canceled
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
    kind: str  # confirmed | failed | cancelled | refunded | shipped | delivered
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
    failure_reason: str | None = None


# --- Shipment ----------------------------------------------------------------


class TrackingStage(StrEnum):
    """Shippo tracking statuses, plus our own first stage."""

    LABEL_PURCHASED = "label_purchased"
    PRE_TRANSIT = "PRE_TRANSIT"
    TRANSIT = "TRANSIT"
    DELIVERED = "DELIVERED"
    RETURNED = "RETURNED"
    FAILURE = "FAILURE"
    UNKNOWN = "UNKNOWN"


FINAL_TRACKING_STAGES = frozenset(
    {TrackingStage.DELIVERED, TrackingStage.RETURNED, TrackingStage.FAILURE}
)


class ShipmentConfig(BaseModel):
    tracking_poll_seconds: int = 3600
    label_file_type: str = "PDF_4x6"


class ShipmentInput(BaseModel):
    order_id: str
    merchant_id: str
    parent_workflow_id: str
    config: ShipmentConfig = Field(default_factory=lambda: ShipmentConfig())
    # Carried across continue-as-new once the label is bought.
    label: Label | None = None
    last_stage: TrackingStage | None = None


class ShipmentPlan(BaseModel):
    """What a shipment needs, read from the order and its merchant."""

    order_id: str
    ship_from: Address
    ship_to: Address
    weight_grams: int
    policy: ShippingPolicy


class RateOption(BaseModel):
    rate_id: str
    carrier: str
    service: str
    amount: int
    currency: str
    estimated_days: int | None = None


class RatesQuote(BaseModel):
    shipment_id: str
    rates: list[RateOption]


class BuyLabel(BaseModel):
    order_id: str
    rate: RateOption
    label_file_type: str = "PDF_4x6"


class Label(BaseModel):
    transaction_id: str
    carrier: str
    service: str
    tracking_number: str
    label_url: str | None = None
    amount: int
    currency: str


class VoidLabel(BaseModel):
    order_id: str
    transaction_id: str


class TrackingQuery(BaseModel):
    carrier: str
    tracking_number: str


class TrackingStatus(BaseModel):
    stage: TrackingStage
    detail: str = ""
    at: str | None = None


class ShipmentRecord(BaseModel):
    """The order's ``shipment`` read model."""

    order_id: str
    status: str
    carrier: str | None = None
    service: str | None = None
    tracking_number: str | None = None
    label_url: str | None = None
    transaction_id: str | None = None
    detail: str = ""


class TrackingChanged(BaseModel):
    """Signal to Shipment: a tracking webhook arrived; re-read the status."""

    tracking_number: str


class VoidRequest(BaseModel):
    """Signal to Shipment: the order was cancelled; stop, or void the label."""

    reason: str = "order_cancelled"


class ShipmentProgress(BaseModel):
    """Signal from Shipment to its parent."""

    stage: TrackingStage
    label: Label | None = None
    detail: str = ""


class ShipmentResult(BaseModel):
    order_id: str
    outcome: str  # delivered | returned | failure | voided | cancelled | no_rate
    label: Label | None = None
    detail: str = ""


ShipmentInput.model_rebuild()
OrderConfig.model_rebuild()
OrderPlacementInput.model_rebuild()


# --- TikTok Shop ---------------------------------------------------------------


class TikTokOrderStatus(StrEnum):
    UNPAID = "UNPAID"
    ON_HOLD = "ON_HOLD"
    AWAITING_SHIPMENT = "AWAITING_SHIPMENT"
    PARTIALLY_SHIPPING = "PARTIALLY_SHIPPING"
    AWAITING_COLLECTION = "AWAITING_COLLECTION"
    IN_TRANSIT = "IN_TRANSIT"
    DELIVERED = "DELIVERED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class TikTokOrderEvent(BaseModel):
    """Signal: a verified ORDER_STATUS_CHANGE webhook (TikTok may repeat or reorder them)."""

    notification_id: str
    order_status: str
    update_time: int


class TikTokConfig(BaseModel):
    shipment: ShipmentConfig = Field(default_factory=lambda: ShipmentConfig())
    # How long an UNPAID/ON_HOLD order may wait for AWAITING_SHIPMENT before the run ends.
    await_shipment_days: int = 30


class TikTokFulfillmentInput(BaseModel):
    shop_id: str
    tiktok_order_id: str
    merchant_id: str
    config: TikTokConfig = Field(default_factory=lambda: TikTokConfig())


class TikTokOrderRef(BaseModel):
    shop_id: str
    tiktok_order_id: str


class TikTokLine(BaseModel):
    sku: str
    name: str = ""
    quantity: int
    unit_price: int


class TikTokOrder(BaseModel):
    shop_id: str
    tiktok_order_id: str
    status: str
    currency: str
    lines: list[TikTokLine]
    subtotal: int
    shipping: int
    total: int
    recipient: Address
    package_id: str | None = None
    delivery_option_id: str | None = None


class SaveTikTokOrder(BaseModel):
    merchant_id: str
    order: TikTokOrder


class ShipTikTokPackage(BaseModel):
    shop_id: str
    tiktok_order_id: str
    package_id: str
    tracking_number: str
    carrier: str
    delivery_option_id: str | None = None
