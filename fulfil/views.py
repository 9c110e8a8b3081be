"""The order as the outside world sees it: the API's answer and the ``data`` of merchant webhooks.

One description of an order, so the API (``GET /api/v1/orders/{id}``) and the
worker (signed ``order.<status>`` webhooks) can never disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from fulfil.enums import OrderSource, OrderStatus


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class OrderItemPublic(BaseModel):
    sku: str
    quantity: int
    unit_price: int | None


class OrderTotals(BaseModel):
    """``null`` amounts: not priced yet (a TikTok order before its workflow priced it)."""

    subtotal: int | None
    discount: int | None
    shipping: int | None
    total: int | None
    currency: str


class PaymentPublic(BaseModel):
    status: str | None
    payment_intent_id: str


class ShipmentPublic(BaseModel):
    carrier: str | None = None
    service: str | None = None
    tracking_number: str | None = None
    label_url: str | None = None
    status: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ShipmentPublic:
        return cls.model_validate({name: record.get(name) for name in cls.model_fields})


class OrderEventPublic(BaseModel):
    at: UtcDatetime
    type: str
    detail: str


class OrderPublic(BaseModel):
    order_id: str
    source: OrderSource
    external_id: str | None
    status: OrderStatus
    items: list[OrderItemPublic]
    totals: OrderTotals
    payment: PaymentPublic | None
    shipment: ShipmentPublic | None
    payout_id: str | None
    created_at: UtcDatetime
    events: list[OrderEventPublic] = Field(description="Oldest first")
