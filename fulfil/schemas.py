"""Public request and response models of the HTTP API.

``*Create`` / ``*Update`` are what clients send, ``*Public`` what they get back.
:class:`OrderPublic` is also the ``data`` of every merchant webhook, so the
API and the worker describe an order in exactly one way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
)

from fulfil.models import Address, Customer, OrderSource, OrderStatus, ShippingPolicy


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, upper case", examples=["USD"])
]
Sku = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        examples=["MUG-1"],
    ),
]
Amount = Annotated[int, Field(ge=0, le=10**12, description="Minor units (cents)")]
Stock = Annotated[int, Field(ge=0, le=2**31 - 1)]
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class _Patch(BaseModel):
    """PATCH bodies: an unknown field is a typo, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


# --- problems (RFC 9457) ---------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(examples=["items[0].quantity"])
    message: str


class ProblemDetails(BaseModel):
    """``application/problem+json``: every error answer of the API."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str
    status: int
    detail: str = ""
    errors: list[FieldError] | None = None


# --- merchants -------------------------------------------------------------


class MerchantCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    stripe_account: str | None = Field(default=None, pattern=r"^acct_[A-Za-z0-9]{1,59}$")
    tiktok_shop_id: str | None = Field(default=None, min_length=1, max_length=64)
    ship_from: Address | None = None
    shipping_policy: ShippingPolicy | None = None
    webhook_url: HttpUrl | None = None


class MerchantCreated(BaseModel):
    """The only answer that shows the API key and the webhook secret."""

    merchant_id: str
    api_key: str
    webhook_secret: str


class MerchantUpdate(_Patch):
    """Only the fields present change; ``null`` clears one."""

    webhook_url: HttpUrl | None = None
    ship_from: Address | None = None
    shipping_policy: ShippingPolicy | None = None


class MerchantPublic(BaseModel):
    merchant_id: str
    name: str
    email: str
    api_key_prefix: str
    stripe_account: str | None
    tiktok_shop_id: str | None
    ship_from: Address | None
    shipping_policy: ShippingPolicy | None
    webhook_url: str | None
    created_at: UtcDatetime


# --- catalogue -------------------------------------------------------------


class ProductCreate(BaseModel):
    sku: Sku
    name: str = Field(min_length=1, max_length=200)
    price: Amount
    currency: Currency
    stock: Stock
    weight_grams: int | None = Field(default=None, ge=0, le=10**7)


class ProductUpdate(_Patch):
    stock: Stock | None = None
    price: Amount | None = None


class ProductPublic(BaseModel):
    sku: str
    name: str
    price: int
    currency: str
    stock: int
    reserved: int
    weight_grams: int | None = None


class DiscountCreate(BaseModel):
    """Exactly one of ``percent_off`` and ``amount_off``; codes are stored upper case."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    percent_off: int | None = Field(default=None, ge=1, le=100)
    amount_off: int | None = Field(default=None, gt=0, le=10**12, validate_default=True)
    currency: Currency | None = Field(
        default=None, description="Of `amount_off`; the engine's default currency when absent"
    )

    @field_validator("code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("amount_off")
    @classmethod
    def _exactly_one_kind(cls, value: int | None, info: ValidationInfo) -> int | None:
        if "percent_off" not in info.data:
            return value  # percent_off itself was invalid and is reported already
        if (info.data["percent_off"] is None) == (value is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        return value


class DiscountPublic(BaseModel):
    code: str
    percent_off: int | None
    amount_off: int | None
    currency: str | None


# --- orders ----------------------------------------------------------------


class OrderLineCreate(BaseModel):
    sku: Sku
    quantity: int = Field(ge=1, le=10_000)


class OrderCreate(BaseModel):
    """A storefront order. Lines with the same sku are merged into one."""

    customer: Customer
    items: list[OrderLineCreate] = Field(min_length=1, max_length=100)
    shipping_address: Address
    discount_code: str | None = Field(default=None, min_length=1, max_length=64)
    payment_method: str = Field(min_length=1, max_length=64, examples=["pm_card_visa"])


class OrderLinks(BaseModel):
    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    self_: str = Field(alias="self")


class OrderAccepted(BaseModel):
    order_id: str
    status: OrderStatus
    links: OrderLinks


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


class OrderList(BaseModel):
    data: list[OrderPublic] = Field(description="Newest first")
    has_more: bool


# --- webhooks and health ---------------------------------------------------


class WebhookReceipt(BaseModel):
    received: bool = True
    duplicate: bool = False


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
