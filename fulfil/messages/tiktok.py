"""TikTokFulfillment's messages: order events, the order as TikTok describes it, the push back.

Workflow id ``tiktok-{shop_id}-{tiktok_order_id}``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from fulfil.messages.common import Address
from fulfil.messages.shipment import ShipmentConfig


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
