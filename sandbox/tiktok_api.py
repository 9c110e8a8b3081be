"""A stateful TikTok Shop stand-in: order detail, package ship, signed requests, order webhooks.

Served under ``/tiktok`` with the paths of the TikTok Shop Open API (202309):

- ``GET /order/202309/orders?ids=a,b`` → ``data.orders``;
- ``POST /fulfillment/202309/packages/{package_id}/ship`` with
  ``{"handover_method": "PICKUP" | "DROP_OFF", "self_shipment": {"tracking_number",
  "shipping_provider_id"}}`` → ``data: {}``;
- ``GET /authorization/202309/shops`` → ``data.shops`` (``id``, ``cipher``, ...);
- ``GET /logistics/202309/delivery_options/{id}/shipping_providers`` →
  ``data.shipping_providers`` (:data:`SHIPPING_PROVIDERS`).

Every request is signed like TikTok's: the query carries ``app_key``
(= ``TIKTOK_APP_KEY``), ``timestamp`` (unix seconds, within 5 minutes),
``shop_cipher`` (the shop's ``cipher``; not needed for the shops list) and
``sign`` = :func:`fulfil.signatures.tiktok_api_signature` over the path
*without* the sandbox's ``/tiktok`` prefix; the header ``x-tts-access-token``
must be ``TIKTOK_ACCESS_TOKEN``. Replies are ``{"code", "message",
"request_id", "data"}``; ``code`` 0 is success. Errors (sandbox codes):

=========  ====  ===========================================================
code       HTTP  meaning
=========  ====  ===========================================================
106001     401   bad ``sign`` / ``app_key`` / ``timestamp`` / access token
36009003   200   invalid parameter (missing ids, bad body, unknown shop_cipher or
                 shipping_provider_id)
21011001   200   order or package not found (for this shop)
21011002   200   the order's status does not allow shipping (e.g. CANCELLED)
21011003   200   the package already shipped with another tracking number
=========  ====  ===========================================================

``shop_cipher`` is not the shop id: read it from the shops list (it is
:func:`shop_cipher`). ``shipping_provider_id`` must be one of
:data:`SHIPPING_PROVIDERS` (TikTok's ids, not carrier names). Line items are
one per unit, as TikTok's are (no ``quantity``); amounts are decimal strings.
Shipping the same package again with the same tracking number answers
success and records nothing new.

Order status webhooks (``ORDER_STATUS_CHANGE``, type 1) go to
``{api_base}/webhooks/tiktok`` signed with ``Authorization`` =
:func:`fulfil.signatures.tiktok_webhook_signature`. On request they are
delivered badly (see :class:`DeliveryFlags`): twice (the same body and
``tts_notification_id`` again, after the first delivery), out of order (after
the event, the order's previous event — older ``update_time`` — is delivered
again; for a new order that is a synthetic ``UNPAID`` event), first with a
bad signature (one attempt, expected 401; then the correctly signed copy),
or late (``delay_ms``). Every attempt is logged at
``GET /_sandbox/tiktok/deliveries``.

Control endpoints under ``/_sandbox/tiktok``: create an order (201, delivers
AWAITING_SHIPMENT), cancel it (delivers CANCELLED), read it, set delivery
rates for every webhook, read the delivery log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from fulfil.signatures import tiktok_api_signature, tiktok_webhook_signature
from sandbox.state import SandboxState, StateDep, get_state, rfc3339

router = APIRouter(prefix="/tiktok", tags=["tiktok"])
control_router = APIRouter(prefix="/_sandbox/tiktok", tags=["sandbox"])

PREFIX = "/tiktok"
TIMESTAMP_TOLERANCE_SECONDS = 300

CODE_INVALID_CREDENTIALS = 106001
CODE_INVALID_PARAMS = 36009003
CODE_NOT_FOUND = 21011001
CODE_STATUS_FORBIDS = 21011002
CODE_ALREADY_SHIPPED = 21011003

DELIVERY_OPTION_ID = "7091146663229654785"
# shipping_provider_id → name (what a seller's self-shipment names its carrier with)
SHIPPING_PROVIDERS: dict[str, str] = {
    "7117858858072016686": "USPS",
    "7117859084333745966": "UPS",
    "7117859166039721774": "FedEx",
    "7129736293935187714": "DHL eCommerce",
}
SHIPPABLE = frozenset({"AWAITING_SHIPMENT"})
SHIPPED = frozenset({"AWAITING_COLLECTION", "IN_TRANSIT", "DELIVERED", "COMPLETED"})
_COUNTRY_NAMES = {
    "US": "United States",
    "GB": "United Kingdom",
    "AU": "Australia",
    "CA": "Canada",
    "DE": "Germany",
    "FR": "France",
}
_MASKED_PHONE = "(+1)213-***-1234"


def _digits(length: int, first: str = "") -> str:
    return first + "".join(secrets.choice(string.digits) for _ in range(length - len(first)))


def _stable_digits(seed: str, length: int = 19) -> str:
    number = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    return "7" + str(number)[: length - 1]


def shop_cipher(shop_id: str) -> str:
    """The ``cipher`` of a shop (also listed by ``GET /authorization/202309/shops``)."""
    digest = hashlib.sha256(f"sandbox-shop:{shop_id}".encode()).digest()[:24]
    return "GCP_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _request_id() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(10).upper()


def _amount(minor_units: int) -> str:
    return str((Decimal(minor_units) / 100).quantize(Decimal("0.01")))


# ------------------------------------------------------------------- errors


class TikTokError(Exception):
    def __init__(self, code: int, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def _reply(data: Any, *, code: int = 0, message: str = "Success", status: int = 200) -> Response:
    body = {"code": code, "message": message, "request_id": _request_id(), "data": data}
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json")


# --------------------------------------------------------------------- store


@dataclass
class OrderEvent:
    """One status of an order, as an ORDER_STATUS_CHANGE webhook tells it."""

    notification_id: str
    order_id: str
    shop_id: str
    status: str
    update_time: int


@dataclass
class DeliveryPolicy:
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    bad_signature_rate: float = 0.0


@dataclass
class TikTokStore:
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[OrderEvent]] = field(default_factory=dict)  # by order id
    package_orders: dict[str, str] = field(default_factory=dict)  # package id → order id
    shops: dict[str, str] = field(default_factory=dict)  # shop id → cipher
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    deliveries: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------- request signing


async def _verified(request: Request) -> tuple[SandboxState, TikTokStore, dict[str, str], bytes]:
    """Check TikTok's request signing; answer the state, store, query and raw body."""
    state = get_state(request)
    settings = state.settings
    params = dict(request.query_params)
    body = await request.body()

    def refuse(message: str) -> TikTokError:
        return TikTokError(CODE_INVALID_CREDENTIALS, message, http_status=401)

    if params.get("app_key") != settings.tiktok_app_key:
        raise refuse("Invalid credentials: unknown app_key.")
    timestamp = params.get("timestamp", "")
    if not timestamp.isdigit():
        raise refuse("Invalid credentials: timestamp is missing or not unix seconds.")
    if abs(time.time() - int(timestamp)) > TIMESTAMP_TOLERANCE_SECONDS:
        raise refuse("Invalid credentials: timestamp is expired.")
    path = request.url.path.removeprefix(PREFIX)
    expected = tiktok_api_signature(settings.tiktok_app_secret, path, params, body)
    if not hmac.compare_digest(expected, params.get("sign", "")):
        raise refuse("Invalid credentials: the sign does not match the request.")
    if request.headers.get("x-tts-access-token") != settings.tiktok_access_token:
        raise refuse("Invalid credentials: the access token is invalid or expired.")
    return state, state.store(TikTokStore), params, body


def _shop_of_cipher(store: TikTokStore, params: Mapping[str, str]) -> str:
    cipher = params.get("shop_cipher")
    if not cipher:
        raise TikTokError(CODE_INVALID_PARAMS, "Invalid params: shop_cipher is required.")
    shop_id = next((s for s, c in store.shops.items() if c == cipher), None)
    if shop_id is None:
        raise TikTokError(CODE_INVALID_PARAMS, f"Invalid params: unknown shop_cipher {cipher}.")
    return shop_id


Operation = Callable[[SandboxState, TikTokStore, dict[str, str], bytes], dict[str, Any]]


async def _answer(request: Request, operation: Operation) -> Response:
    try:
        state, store, params, body = await _verified(request)
        data = operation(state, store, params, body)
    except TikTokError as exc:
        return _reply(None, code=exc.code, message=exc.message, status=exc.http_status)
    return _reply(data)


# -------------------------------------------------------------------- orders


def _recipient_address(address: AddressIn) -> dict[str, Any]:
    country = address.country.upper()
    lines = [address.street1, address.street2 or ""]
    full = ", ".join(p for p in [*lines, address.city, address.state, address.zip, country] if p)
    return {
        "name": address.name,
        "first_name": address.name.split(" ", 1)[0],
        "last_name": address.name.split(" ", 1)[1] if " " in address.name else "",
        "phone_number": address.phone or _MASKED_PHONE,
        "address_line1": address.street1,
        "address_line2": address.street2 or "",
        "address_line3": "",
        "address_line4": "",
        "address_detail": address.street2 or "",
        "postal_code": address.zip,
        "region_code": country,
        "full_address": full,
        "district_info": [
            {
                "address_level": "L0",
                "address_level_name": "Country",
                "address_name": _COUNTRY_NAMES.get(country, country),
            },
            {"address_level": "L1", "address_level_name": "State", "address_name": address.state},
            {"address_level": "L3", "address_level_name": "City", "address_name": address.city},
        ],
    }


def _line_items(order_in: OrderIn, package_id: str) -> list[dict[str, Any]]:
    """One line item per unit, like TikTok's."""
    items = []
    for item in order_in.items:
        sku_id = _stable_digits(f"{order_in.shop_id}:sku:{item.sku}")
        for _ in range(item.quantity):
            items.append(
                {
                    "id": _digits(18, "5"),
                    "sku_id": sku_id,
                    "seller_sku": item.sku,
                    "product_id": _stable_digits(f"{order_in.shop_id}:product:{item.sku}"),
                    "product_name": item.name or item.sku,
                    "sku_name": "Default",
                    "sku_image": "",
                    "sku_type": "NORMAL",
                    "original_price": _amount(item.price),
                    "sale_price": _amount(item.price),
                    "currency": order_in.currency,
                    "platform_discount": "0.00",
                    "seller_discount": "0.00",
                    "display_status": "AWAITING_SHIPMENT",
                    "package_id": package_id,
                    "package_status": "TO_FULFILL",
                    "shipping_provider_id": "",
                    "shipping_provider_name": "",
                    "tracking_number": "",
                    "is_gift": False,
                    "cancel_user": "",
                    "cancel_reason": "",
                    "rts_time": 0,
                }
            )
    return items


def _new_order(order_in: OrderIn, now: int) -> dict[str, Any]:
    order_id = _digits(18, "57")
    package_id = _digits(19, "115")
    sub_total = sum(item.price * item.quantity for item in order_in.items)
    currency = order_in.currency
    return {
        "id": order_id,
        "status": "AWAITING_SHIPMENT",
        "shop_id": order_in.shop_id,
        "user_id": _digits(19, "7"),
        "buyer_email": order_in.buyer_email or f"v{_digits(12)}@scs.tiktokw.us",
        "buyer_message": "",
        "create_time": now - 1,
        "paid_time": now,
        "update_time": now,
        "rts_sla_time": now + 3 * 86_400,
        "tts_sla_time": now + 7 * 86_400,
        "commerce_platform": "TIKTOK_SHOP",
        "order_type": "NORMAL",
        "delivery_option_id": DELIVERY_OPTION_ID,
        "delivery_option_name": "Standard shipping",
        "delivery_type": "HOME_DELIVERY",
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "shipping_type": "SELLER",
        "shipping_provider": "",
        "shipping_provider_id": "",
        "tracking_number": "",
        "is_cod": False,
        "is_on_hold_order": False,
        "is_sample_order": False,
        "is_replacement_order": False,
        "payment_method_name": "Credit card",
        "warehouse_id": _stable_digits(f"{order_in.shop_id}:warehouse"),
        "cancel_reason": "",
        "cancellation_initiator": "",
        "recipient_address": _recipient_address(order_in.address),
        "line_items": _line_items(order_in, package_id),
        "packages": [{"id": package_id}],
        "payment": {
            "currency": currency,
            "sub_total": _amount(sub_total),
            "shipping_fee": _amount(order_in.shipping_fee),
            "seller_discount": "0.00",
            "platform_discount": "0.00",
            "total_amount": _amount(sub_total + order_in.shipping_fee),
            "original_total_product_price": _amount(sub_total),
            "original_shipping_fee": _amount(order_in.shipping_fee),
            "shipping_fee_seller_discount": "0.00",
            "shipping_fee_platform_discount": "0.00",
            "tax": "0.00",
            "product_tax": "0.00",
            "shipping_fee_tax": "0.00",
        },
    }


def _event(store: TikTokStore, order: dict[str, Any], status: str, update_time: int) -> OrderEvent:
    event = OrderEvent(
        notification_id=_digits(19, "7"),
        order_id=order["id"],
        shop_id=order["shop_id"],
        status=status,
        update_time=update_time,
    )
    store.events.setdefault(order["id"], []).append(event)
    return event


def _change_status(
    state: SandboxState,
    store: TikTokStore,
    order: dict[str, Any],
    status: str,
    flags: DeliveryFlags | None = None,
) -> OrderEvent:
    """Move ``order`` to ``status`` and deliver the ORDER_STATUS_CHANGE webhook."""
    update_time = max(int(time.time()), order["update_time"] + 1)
    order["status"] = status
    order["update_time"] = update_time
    for item in order["line_items"]:
        item["display_status"] = status
    event = _event(store, order, status, update_time)
    deliver_event(state, store, event, flags or DeliveryFlags())
    return event


# ------------------------------------------------------------------ webhooks


DeliveryKind = Literal["original", "duplicate", "stale", "bad_signature"]


def _webhook_body(event: OrderEvent) -> bytes:
    return json.dumps(
        {
            "type": 1,
            "tts_notification_id": event.notification_id,
            "shop_id": event.shop_id,
            "timestamp": int(time.time()),
            "data": {
                "order_id": event.order_id,
                "order_status": event.status,
                "is_on_hold_order": event.status == "ON_HOLD",
                "update_time": event.update_time,
            },
        }
    ).encode()


def deliver_event(
    state: SandboxState, store: TikTokStore, event: OrderEvent, flags: DeliveryFlags
) -> None:
    """Deliver ``event`` in the background, as badly as ``flags`` and the policy ask."""
    policy = store.policy
    duplicate = flags.duplicate or random.random() < policy.duplicate_rate
    reorder = flags.reorder or random.random() < policy.reorder_rate
    bad_signature = flags.bad_signature or random.random() < policy.bad_signature_rate
    history = store.events.get(event.order_id, [])
    position = history.index(event) if event in history else -1
    stale = history[position - 1] if reorder and position > 0 else None
    state.webhooks.spawn(
        _deliver_sequence(
            state,
            store,
            event,
            stale=stale,
            duplicate=duplicate,
            bad_signature=bad_signature,
            delay=flags.delay_ms / 1000,
        )
    )


async def _deliver_sequence(
    state: SandboxState,
    store: TikTokStore,
    event: OrderEvent,
    *,
    stale: OrderEvent | None,
    duplicate: bool,
    bad_signature: bool,
    delay: float,
) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    body = _webhook_body(event)
    if bad_signature:
        await _send(state, store, event, body, kind="bad_signature")
    await _send(state, store, event, body, kind="original")
    if duplicate:
        await _send(state, store, event, body, kind="duplicate")
    if stale is not None:
        await _send(state, store, stale, _webhook_body(stale), kind="stale")


async def _send(
    state: SandboxState, store: TikTokStore, event: OrderEvent, body: bytes, *, kind: DeliveryKind
) -> None:
    settings = state.settings
    signature_ok = kind != "bad_signature"
    secret = settings.tiktok_app_secret if signature_ok else "not-" + settings.tiktok_app_secret
    signature = tiktok_webhook_signature(settings.tiktok_app_key, secret, body)
    attempts = 0

    def log_attempt(status_code: int | None, error: str | None) -> None:
        nonlocal attempts
        attempts += 1
        store.deliveries.append(
            {
                "notification_id": event.notification_id,
                "order_id": event.order_id,
                "shop_id": event.shop_id,
                "order_status": event.status,
                "update_time": event.update_time,
                "kind": kind,
                "signature_ok": signature_ok,
                "attempt": attempts,
                "response_status": status_code,
                "error": error,
                "at": rfc3339(time.time()),
            }
        )

    await state.webhooks.send(
        settings.api_base.rstrip("/") + "/webhooks/tiktok",
        body,
        headers={"Authorization": signature},
        description=f"tiktok {event.status} {event.order_id} ({kind})",
        # A bad signature is meant to be refused: one attempt, then the signed copy.
        max_attempts=1 if kind == "bad_signature" else None,
        on_attempt=log_attempt,
    )


# ---------------------------------------------------------------- API routes


def _order_detail(
    state: SandboxState, store: TikTokStore, params: dict[str, str], body: bytes
) -> dict[str, Any]:
    shop_id = _shop_of_cipher(store, params)
    ids = [i for i in params.get("ids", "").split(",") if i.strip()]
    if not ids:
        raise TikTokError(CODE_INVALID_PARAMS, "Invalid params: ids is required.")
    if len(ids) > 50:
        raise TikTokError(CODE_INVALID_PARAMS, "Invalid params: at most 50 ids.")
    orders = []
    for order_id in ids:
        order = store.orders.get(order_id.strip())
        if order is None or order["shop_id"] != shop_id:
            raise TikTokError(CODE_NOT_FOUND, f"Order {order_id} not found in this shop.")
        orders.append(order)
    return {"orders": orders}


@router.get("/order/202309/orders")
async def get_order_detail(request: Request) -> Response:
    return await _answer(request, _order_detail)


def _ship_package(
    state: SandboxState, store: TikTokStore, params: dict[str, str], raw: bytes, package_id: str
) -> dict[str, Any]:
    shop_id = _shop_of_cipher(store, params)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise TikTokError(CODE_INVALID_PARAMS, "Invalid params: the body is not JSON.") from None
    if not isinstance(body, dict):
        raise TikTokError(CODE_INVALID_PARAMS, "Invalid params: the body is not an object.")
    handover = body.get("handover_method", "PICKUP")
    if handover not in ("PICKUP", "DROP_OFF"):
        raise TikTokError(CODE_INVALID_PARAMS, "Invalid params: handover_method.")
    shipment = body.get("self_shipment")
    if not isinstance(shipment, dict):
        raise TikTokError(CODE_INVALID_PARAMS, "Invalid params: self_shipment is required.")
    tracking_number = shipment.get("tracking_number")
    provider_id = shipment.get("shipping_provider_id")
    if not isinstance(tracking_number, str) or not tracking_number.strip():
        raise TikTokError(CODE_INVALID_PARAMS, "Invalid params: self_shipment.tracking_number.")
    if not isinstance(provider_id, str) or provider_id not in SHIPPING_PROVIDERS:
        raise TikTokError(
            CODE_INVALID_PARAMS,
            f"Invalid params: self_shipment.shipping_provider_id {provider_id!r} is not a "
            "shipping provider of the delivery option (see GET /logistics/202309/"
            "delivery_options/{delivery_option_id}/shipping_providers).",
        )
    order_id = store.package_orders.get(package_id)
    order = store.orders.get(order_id or "")
    if order is None or order["shop_id"] != shop_id:
        raise TikTokError(CODE_NOT_FOUND, f"Package {package_id} not found in this shop.")

    if order["status"] in SHIPPED:
        if order["tracking_number"] == tracking_number:
            return {}  # the same shipment again: nothing new
        raise TikTokError(
            CODE_ALREADY_SHIPPED,
            f"Package {package_id} already shipped with tracking number "
            f"{order['tracking_number']}.",
        )
    if order["status"] not in SHIPPABLE:
        raise TikTokError(
            CODE_STATUS_FORBIDS,
            f"Order {order['id']} is {order['status']}: the package cannot be shipped.",
        )

    carrier = SHIPPING_PROVIDERS[provider_id]
    now = int(time.time())
    order["tracking_number"] = tracking_number
    order["shipping_provider_id"] = provider_id
    order["shipping_provider"] = carrier
    for item in order["line_items"]:
        if item["package_id"] == package_id:
            item.update(
                tracking_number=tracking_number,
                shipping_provider_id=provider_id,
                shipping_provider_name=carrier,
                package_status="PROCESSING",
                rts_time=now,
            )
    state.ledger.put(
        "tiktok_shipments",
        package_id,
        {
            "status": "shipped",
            "order_id": order["id"],
            "shop_id": order["shop_id"],
            "package_id": package_id,
            "tracking_number": tracking_number,
            "shipping_provider_id": provider_id,
            "carrier": carrier,
            "handover_method": handover,
            "idempotency_key": None,
            "created": rfc3339(now),
        },
    )
    status = "AWAITING_COLLECTION" if handover == "PICKUP" else "IN_TRANSIT"
    _change_status(state, store, order, status)
    return {}


@router.post("/fulfillment/202309/packages/{package_id}/ship")
async def ship_package(request: Request, package_id: str) -> Response:
    def ship(
        state: SandboxState, store: TikTokStore, params: dict[str, str], raw: bytes
    ) -> dict[str, Any]:
        return _ship_package(state, store, params, raw, package_id)

    return await _answer(request, ship)


@router.get("/authorization/202309/shops")
async def get_authorized_shops(request: Request) -> Response:
    def shops(
        state: SandboxState, store: TikTokStore, params: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        return {
            "shops": [
                {
                    "id": shop_id,
                    "name": f"Sandbox shop {shop_id}",
                    "region": "US",
                    "seller_type": "LOCAL",
                    "cipher": cipher,
                    "code": "USSANDBOX" + shop_id[-4:],
                }
                for shop_id, cipher in store.shops.items()
            ]
        }

    return await _answer(request, shops)


@router.get("/logistics/202309/delivery_options/{delivery_option_id}/shipping_providers")
async def get_shipping_providers(request: Request, delivery_option_id: str) -> Response:
    def providers(
        state: SandboxState, store: TikTokStore, params: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        _shop_of_cipher(store, params)
        return {
            "shipping_providers": [
                {"id": provider_id, "name": name}
                for provider_id, name in SHIPPING_PROVIDERS.items()
            ]
        }

    return await _answer(request, providers)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def unknown_tiktok_path(path: str) -> Response:
    return _reply(None, code=CODE_INVALID_PARAMS, message=f"Unknown API path /{path}.", status=404)


# ---------------------------------------------------------- control routes


class DeliveryFlags(BaseModel):
    """How badly to deliver this event's webhook (on top of ``/delivery`` rates)."""

    duplicate: bool = Field(default=False, description="deliver it a second time, same id")
    reorder: bool = Field(
        default=False, description="then deliver the order's previous (older) event again"
    )
    bad_signature: bool = Field(
        default=False, description="first one attempt with a wrong Authorization"
    )
    delay_ms: int = Field(default=0, ge=0, le=600_000, description="wait before delivering")


class AddressIn(BaseModel):
    name: str = Field(min_length=1)
    street1: str = Field(min_length=1)
    street2: str | None = None
    city: str
    state: str = ""
    zip: str
    country: str = Field(min_length=2, max_length=2)
    phone: str | None = None


class ItemIn(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(ge=1, le=100)
    price: int = Field(ge=0, description="unit price in minor units")
    name: str | None = None


class OrderIn(DeliveryFlags):
    shop_id: str = Field(min_length=1)
    items: list[ItemIn] = Field(min_length=1)
    address: AddressIn
    currency: str = Field(default="USD", min_length=3, max_length=3)
    shipping_fee: int = Field(default=0, ge=0)
    buyer_email: str | None = None


class OrderCreated(BaseModel):
    order_id: str
    package_id: str
    shop_id: str
    shop_cipher: str
    status: str
    notification_id: str


class DeliveryPolicyIn(BaseModel):
    duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    reorder_rate: float = Field(default=0.0, ge=0, le=1)
    bad_signature_rate: float = Field(default=0.0, ge=0, le=1)


def _not_found(order_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"No TikTok order {order_id}."}, status_code=404)


@control_router.post("/orders", status_code=201)
async def create_order(order_in: OrderIn, state: StateDep) -> OrderCreated:
    """Create an order in AWAITING_SHIPMENT and deliver its signed webhook."""
    store = state.store(TikTokStore)
    now = int(time.time())
    order = _new_order(order_in, now)
    store.orders[order["id"]] = order
    store.shops.setdefault(order_in.shop_id, shop_cipher(order_in.shop_id))
    for package in order["packages"]:
        store.package_orders[package["id"]] = order["id"]
    _event(store, order, "UNPAID", order["create_time"])  # before the sandbox saw it
    event = _event(store, order, "AWAITING_SHIPMENT", now)
    deliver_event(state, store, event, order_in)
    return OrderCreated(
        order_id=order["id"],
        package_id=order["packages"][0]["id"],
        shop_id=order_in.shop_id,
        shop_cipher=store.shops[order_in.shop_id],
        status=order["status"],
        notification_id=event.notification_id,
    )


@control_router.get("/orders/{order_id}", response_model=None)
async def read_order(order_id: str, state: StateDep) -> dict[str, Any] | JSONResponse:
    """The order as ``GET /tiktok/order/202309/orders`` shows it."""
    order = state.store(TikTokStore).orders.get(order_id)
    return order if order is not None else _not_found(order_id)


@control_router.post("/orders/{order_id}/cancel", response_model=None)
async def cancel_order(
    order_id: str, state: StateDep, flags: DeliveryFlags | None = None
) -> dict[str, Any] | JSONResponse:
    """Cancel (as the buyer) and deliver CANCELLED; 409 once shipped or cancelled."""
    store = state.store(TikTokStore)
    order = store.orders.get(order_id)
    if order is None:
        return _not_found(order_id)
    if order["status"] == "CANCELLED" or order["status"] in SHIPPED:
        return JSONResponse(
            {"detail": f"Order {order_id} is {order['status']}; it cannot be cancelled."},
            status_code=409,
        )
    order["cancel_reason"] = "No longer needed"
    order["cancellation_initiator"] = "BUYER"
    for item in order["line_items"]:
        item.update(cancel_user="BUYER", cancel_reason="No longer needed")
    event = _change_status(state, store, order, "CANCELLED", flags)
    return {**order, "notification_id": event.notification_id}


@control_router.post("/delivery")
async def set_delivery_policy(policy_in: DeliveryPolicyIn, state: StateDep) -> DeliveryPolicyIn:
    """Rates (0..1) at which every later webhook is duplicated, reordered or badly signed."""
    store = state.store(TikTokStore)
    store.policy = DeliveryPolicy(**policy_in.model_dump())
    return DeliveryPolicyIn(**asdict(store.policy))


@control_router.get("/delivery")
async def get_delivery_policy(state: StateDep) -> DeliveryPolicyIn:
    return DeliveryPolicyIn(**asdict(state.store(TikTokStore).policy))


@control_router.get("/deliveries")
async def list_deliveries(state: StateDep, order_id: str | None = None) -> list[dict[str, Any]]:
    """Every webhook attempt, oldest first: ``{"notification_id", "order_id", "shop_id",
    "order_status", "update_time", "kind": "original" | "duplicate" | "stale" |
    "bad_signature", "signature_ok", "attempt", "response_status", "error", "at"}``."""
    deliveries = state.store(TikTokStore).deliveries
    return [d for d in deliveries if order_id is None or d["order_id"] == order_id]
