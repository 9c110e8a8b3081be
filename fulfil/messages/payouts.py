"""EscrowPayout's and PayoutRelease's messages.

Workflow ids ``payout-{payout_id}`` (one per paid checkout or order of a Connect
seller) and the ``payout-release`` schedule's runs.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from fulfil.enums import DisputeOutcome, PayoutSource, PayoutStatus


class PayoutConfig(BaseModel):
    """Read from settings when the payout starts (workflows read no env)."""

    hold_seconds: int
    fee_bps: int
    # How long after release a dispute can still reverse the transfer.
    dispute_window_seconds: int = 120 * 86_400
    # The first wait before a refused transfer is tried again (doubling up to an hour).
    transfer_retry_seconds: int = 30


class CheckoutCharge(BaseModel):
    """A marketplace checkout: the payout charges the buyer first."""

    checkout_id: str
    payment_method: str
    buyer_email: str
    listing: str


class EscrowPayoutInput(BaseModel):
    payout_id: str
    merchant_id: str
    stripe_account: str
    source: PayoutSource
    amount: int
    currency: str
    config: PayoutConfig
    order_id: str | None = None
    # A storefront order is paid already: its PaymentIntent and charge.
    payment_intent_id: str | None = None
    charge_id: str | None = None
    checkout: CheckoutCharge | None = None


class PayoutRef(BaseModel):
    payout_id: str


class PayoutCharge(BaseModel):
    payout_id: str
    merchant_id: str
    amount: int
    currency: str
    checkout: CheckoutCharge


class PayoutChargeResult(BaseModel):
    payment_intent_id: str
    status: str  # Stripe's: succeeded | requires_action | ...
    charge_id: str | None = None
    decline: str | None = None


class PayoutRecord(BaseModel):
    """A change to the payout's read model (only the fields given change)."""

    payout_id: str
    status: PayoutStatus
    event: str
    detail: str = ""
    payment_intent_id: str | None = None
    charge_id: str | None = None
    hold_until: str | None = None  # RFC 3339
    transfer_id: str | None = None
    reversal_id: str | None = None
    dispute_id: str | None = None
    transfer_error: str | None = None


class PayoutPosting(BaseModel):
    """A ledger posting of the payout (charge, split, transfer, reversal, refund)."""

    payout_id: str
    what: str
    amount: int
    currency: str
    fee: int = 0
    order_id: str | None = None
    memo: str = ""


class TransferRequest(BaseModel):
    payout_id: str
    amount: int
    currency: str
    destination: str
    source_transaction: str | None
    attempt: int = 1


class TransferResult(BaseModel):
    transfer_id: str
    amount: int


class ReversalRequest(BaseModel):
    payout_id: str
    transfer_id: str
    attempt: int = 1


class ReversalResult(BaseModel):
    reversal_id: str
    amount: int


class PayoutRefundRequest(BaseModel):
    payout_id: str
    payment_intent_id: str
    amount: int
    reason: str
    order_id: str | None = None


class DisputeCheck(BaseModel):
    dispute_id: str


class DisputeState(BaseModel):
    """What Stripe says of a dispute (re-verified before it counts)."""

    dispute_id: str
    status: str  # needs_response | under_review | won | lost | ...
    charge_id: str | None = None
    payment_intent_id: str | None = None
    amount: int = 0


class StripeDisputeEvent(BaseModel):
    """Signal: Stripe's webhook says a dispute opened or closed; the payout asks Stripe."""

    dispute_id: str


class OpenDispute(BaseModel):
    """Update: a merchant or ops open a dispute (they are authenticated)."""

    reason: str = Field(default="", max_length=500)
    opened_by: str = "ops"


class ResolveDispute(BaseModel):
    """Update (ops): end a dispute."""

    outcome: DisputeOutcome


class ReleasePayout(BaseModel):
    """Signal from PayoutRelease: release now if releasable (repeats are harmless)."""

    run_id: str = ""


class ChargeRefunded(BaseModel):
    """Signal from the order: its payment was refunded, so nothing is to be paid out."""

    refund_id: str
    reason: str = ""


class PayoutView(BaseModel):
    """Query and update result: the live view of a payout."""

    payout_id: str
    status: PayoutStatus
    step: str
    hold_until: str | None = None
    transfer_id: str | None = None
    dispute_id: str | None = None


class PayoutReleaseInput(BaseModel):
    batch: int = 500


class ReleasablePayouts(BaseModel):
    payout_ids: list[str]


class ReleaseRunResult(BaseModel):
    signalled: int


class ReconciliationDifference(BaseModel):
    kind: str
    subject: str = Field(description="The order, payout or posting concerned")
    expected: int | str | None = None
    found: int | str | None = None
    detail: str = ""


class ReconciliationReport(BaseModel):
    """Our books against themselves and against Stripe, to the cent."""

    balanced: bool
    differences: list[ReconciliationDifference]
    checked: dict[str, int] = Field(description="How many of each thing were compared")
