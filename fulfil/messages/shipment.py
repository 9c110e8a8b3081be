"""Shipment's messages: plan, rates, label, tracking, and what it tells its parent.

Workflow id ``shipment-{order_id}``; a child of OrderPlacement or TikTokFulfillment.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from fulfil.enums import ShipmentOutcome, TrackingStage
from fulfil.messages.common import Address, ShippingPolicy
from fulfil.settings import Settings


class ShipmentConfig(BaseModel):
    tracking_poll_seconds: int = 3600
    label_file_type: str = "PDF_4x6"

    @classmethod
    def from_settings(cls, settings: Settings) -> ShipmentConfig:
        return cls(tracking_poll_seconds=settings.tracking_poll_seconds)


class Label(BaseModel):
    transaction_id: str
    carrier: str
    service: str
    tracking_number: str
    label_url: str | None = None
    amount: int
    currency: str


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
    status: str  # a tracking stage in lower case, or a ShipmentOutcome
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
    outcome: ShipmentOutcome
    label: Label | None = None
    detail: str = ""
