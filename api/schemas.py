"""Public request and response models of the HTTP API.

``*Create`` / ``*Update`` are what clients send, ``*Public`` what they get back.
The order itself (:class:`fulfil.views.OrderPublic`) is shared with the worker,
which sends it as the ``data`` of merchant webhooks.

Requests are strict: an unknown field is refused (it is a typo, not a no-op),
numbers of money and stock are integers only (``true``, ``1e3`` and ``"10"``
are refused), and no text may hold a NUL character (PostgreSQL cannot store
it; it used to fail with a 500).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fulfil.enums import OrderStatus
from fulfil.messages.common import EMAIL_PATTERN, NO_NUL, Address, Customer, ShippingPolicy
from fulfil.outbound import UrlRefused, allowlisted
from fulfil.views import OrderPublic, UtcDatetime

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
Amount = Annotated[int, Field(strict=True, ge=0, le=10**12, description="Minor units (cents)")]
Stock = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]
Text = Annotated[str, Field(pattern=NO_NUL)]
WebhookUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2048,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s@\x00]+$",
        description="http(s), no credentials, not resolving to a private or loopback address "
        "(https in production)",
        examples=["https://shop.example.com/hooks/fulfil"],
    ),
]


def _find_nul(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_nul(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_nul(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


class ApiRequest(BaseModel):
    """Every request body: unknown fields refused, NUL characters refused anywhere."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        where = _find_nul(data, "")
        if where is not None:
            raise ValueError(f"{where or 'a field'} contains a NUL character")
        return data


def _check_webhook_url(value: str | None) -> str | None:
    """The syntax rules (scheme, credentials, path); addresses are checked by the route."""
    if value is None:
        return None
    try:
        allowlisted(value, [])
    except UrlRefused as err:
        raise ValueError(str(err)) from None
    return value.strip()


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


class MerchantCreate(ApiRequest):
    name: Text = Field(min_length=1, max_length=200)
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    stripe_account: str | None = Field(default=None, pattern=r"^acct_[A-Za-z0-9]{1,59}$")
    tiktok_shop_id: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
    )
    ship_from: Address | None = None
    shipping_policy: ShippingPolicy | None = None
    webhook_url: WebhookUrl | None = None

    _webhook_url = field_validator("webhook_url")(_check_webhook_url)


class MerchantCreated(BaseModel):
    """The only answer that shows the API key and the webhook secret."""

    merchant_id: str
    api_key: str
    webhook_secret: str


class MerchantUpdate(ApiRequest):
    """Only the fields present change; ``null`` clears one."""

    webhook_url: WebhookUrl | None = None
    ship_from: Address | None = None
    shipping_policy: ShippingPolicy | None = None

    _webhook_url = field_validator("webhook_url")(_check_webhook_url)


class WebhookEndpointPublic(BaseModel):
    """The health of the merchant's webhook endpoint (a circuit breaker)."""

    status: Literal["ok", "failing", "parked"]
    consecutive_failures: int
    parked_until: UtcDatetime | None = Field(
        description="While parked, deliveries wait instead of calling the endpoint"
    )
    last_error: str | None


class MerchantPublic(BaseModel):
    merchant_id: str
    name: str
    email: str
    stripe_account: str | None
    tiktok_shop_id: str | None
    ship_from: Address | None
    shipping_policy: ShippingPolicy | None
    webhook_url: str | None
    webhook_endpoint: WebhookEndpointPublic
    created_at: UtcDatetime


class KeyCreate(ApiRequest):
    role: Literal["owner", "staff"] = Field(
        description="owner: everything; staff: reads orders and products, cancels orders"
    )


class KeyCreated(BaseModel):
    """The only answer that shows the key."""

    key_id: str
    api_key: str
    role: Literal["owner", "staff"]


class KeyPublic(BaseModel):
    key_id: str
    role: Literal["owner", "staff"]
    prefix: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    expires_at: UtcDatetime | None = Field(
        default=None, description="Set once the key is deleted: it works until then"
    )


# --- catalogue -------------------------------------------------------------


class ProductCreate(ApiRequest):
    sku: Sku
    name: Text = Field(min_length=1, max_length=200)
    price: Amount
    currency: Currency
    stock: Stock
    weight_grams: int | None = Field(default=None, strict=True, ge=0, le=10**7)


class ProductUpdate(ApiRequest):
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


class DiscountCreate(ApiRequest):
    """Exactly one of ``percent_off`` and ``amount_off``; codes are stored upper case."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["percent_off"],
                    "properties": {
                        "percent_off": {"type": "integer"},
                        "amount_off": {"type": "null"},
                    },
                },
                {
                    "required": ["amount_off"],
                    "properties": {
                        "amount_off": {"type": "integer"},
                        "percent_off": {"type": "null"},
                    },
                },
            ]
        },
    )

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    percent_off: int | None = Field(default=None, strict=True, ge=1, le=100)
    amount_off: int | None = Field(
        default=None, strict=True, gt=0, le=10**12, validate_default=True
    )
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


class OrderLineCreate(ApiRequest):
    sku: Sku
    quantity: int = Field(strict=True, ge=1, le=10_000)


class OrderCreate(ApiRequest):
    """A storefront order. Lines with the same sku are merged into one."""

    customer: Customer
    items: list[OrderLineCreate] = Field(min_length=1, max_length=100)
    shipping_address: Address
    discount_code: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
    )
    payment_method: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$", examples=["pm_card_visa"]
    )


class OrderLinks(BaseModel):
    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    self_: str = Field(alias="self")


class OrderAccepted(BaseModel):
    order_id: str
    status: OrderStatus
    links: OrderLinks


class OrderList(BaseModel):
    data: list[OrderPublic] = Field(description="Newest first")
    has_more: bool


# --- webhooks and health ---------------------------------------------------


class WebhookReceipt(BaseModel):
    received: bool = True
    duplicate: bool = False
    ignored: str | None = Field(
        default=None, description="Why a verified event changes nothing (recorded all the same)"
    )


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` serialised once by pydantic: for hot routes whose ``response_model`` already
    documents the shape (FastAPI would dump, validate and dump it again)."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
