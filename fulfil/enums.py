"""The engine's closed vocabularies: statuses, failure reasons and outcomes, as enums.

They are ``StrEnum``s, so on the wire (workflow payloads, PostgreSQL, JSON) they
are the plain strings CONTRACT.md names, and recorded histories stay readable.
"""

from __future__ import annotations

from enum import StrEnum


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
SHIPPED_OR_LATER = frozenset({OrderStatus.SHIPPED, OrderStatus.DELIVERED})


class OrderSource(StrEnum):
    STOREFRONT = "storefront"
    TIKTOK = "tiktok"


class FailureReason(StrEnum):
    """Why an order ended ``failed``: stored on the order and told to the customer."""

    OUT_OF_STOCK = "out_of_stock"
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_REJECTED = "payment_rejected"
    PAYMENT_TIMEOUT = "payment_timeout"
    SHIPPING_UNAVAILABLE = "shipping_unavailable"
    FULFILMENT_ERROR = "fulfilment_error"


class PaymentStatus(StrEnum):
    """A PaymentIntent's status as the order records it (Stripe's words, plus our two)."""

    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    REFUNDED = "refunded"
    PAID_ON_TIKTOK = "paid_on_tiktok"


class CustomerEmailKind(StrEnum):
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    REFUNDED = "refunded"


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


class ShipmentOutcome(StrEnum):
    """How a ``Shipment`` run ended."""

    DELIVERED = "delivered"
    RETURNED = "returned"
    FAILURE = "failure"  # the carrier reported a delivery failure
    VOIDED = "voided"  # cancelled after the label: the label was refunded
    CANCELLED = "cancelled"  # cancelled before any label was bought
    NO_RATE = "no_rate"  # no rate matches the merchant's policy
    LABEL_REFUSED = "label_refused"
    CANNOT_SHIP = "cannot_ship"  # e.g. the merchant has no ship-from address


SHIPMENT_CANCELLED = frozenset({ShipmentOutcome.VOIDED, ShipmentOutcome.CANCELLED})
SHIPMENT_UNAVAILABLE = frozenset(
    {ShipmentOutcome.NO_RATE, ShipmentOutcome.LABEL_REFUSED, ShipmentOutcome.CANNOT_SHIP}
)


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


class PayoutStatus(StrEnum):
    """An escrowed payout's life: charged (or paid with the order) → held → releasable →
    released; a dispute freezes it, a refund ends it."""

    PENDING = "pending"  # a checkout not charged yet
    HOLDING = "holding"
    DISPUTED = "disputed"
    RELEASABLE = "releasable"
    RELEASED = "released"
    REFUNDED = "refunded"
    FAILED = "failed"  # the checkout's payment failed: nothing to pay out


PAYOUT_CLOSED_STATUSES = frozenset({PayoutStatus.REFUNDED, PayoutStatus.FAILED})


class PayoutSource(StrEnum):
    CHECKOUT = "checkout"
    ORDER = "order"


class DisputeOutcome(StrEnum):
    """How a dispute ends: ops decide (release, refund), or Stripe closes it (won, lost)."""

    RELEASE = "release"
    REFUND = "refund"
    WON = "won"
    LOST = "lost"


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # could not even roll back (the token was gone): resources listed
    ROLLED_BACK = "rolled_back"


class DeploymentStep(StrEnum):
    """The nine steps, in the order they run."""

    VERIFY_TOKEN = "verify_token"
    CREATE_NAMESPACE = "create_namespace"
    DEPLOY_WORKERS = "deploy_workers"
    CREATE_D1 = "create_d1"
    CREATE_R2 = "create_r2"
    CONFIGURE_DOMAIN = "configure_domain"
    CREATE_DNS_RECORDS = "create_dns_records"
    SET_ENVIRONMENT = "set_environment"
    RUN_POST_DEPLOY = "run_post_deploy"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
