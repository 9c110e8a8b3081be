"""A stateful Shippo stand-in: shipments with rates, labels, refunds, tracking.

Served under ``/shippo`` with Shippo's paths, JSON bodies and response shapes,
so the official SDK works unchanged::

    shippo.Shippo(
        api_key_header="ShippoToken shippo_test_dev",
        server_url="http://127.0.0.1:8100/shippo",
    )

Any ``Authorization: ShippoToken <key>`` is accepted (401 without one).

**Rates** (``POST /shipments``; always synchronous, ``status: SUCCESS``) are in
USD and depend only on the billable weight: the total weight of the parcels
rounded up to whole pounds (at least 1). Each service charges its first pound
plus a price per further pound (:data:`SERVICE_LEVELS`):

=======================  ========  ====  =========  ==============
servicelevel token       provider  days  first lb   per further lb
=======================  ========  ====  =========  ==============
usps_ground_advantage    USPS      5     5.40       0.85
usps_priority            USPS      3     7.58       1.35
ups_ground               UPS       4     9.12       1.10
fedex_2_day              FedEx     2     18.45      2.05
ups_next_day_air         UPS       1     32.80      3.90
=======================  ========  ====  =========  ==============

so the cheapest rate is always USPS Ground Advantage and the fastest UPS Next
Day Air (their ``attributes`` carry ``CHEAPEST`` / ``FASTEST``).

**Labels** (``POST /transactions``) succeed at once; buying the same rate
again answers the same transaction (no second label). A refund
(``POST /refunds``) succeeds while the parcel is still ``PRE_TRANSIT`` and
stops it for good; once it moved the refund is ``ERROR`` (the label is
``REFUNDREJECTED``). Refunding a label again answers the same refund.

**Tracking** follows the sandbox clock (``state.clock``: manual advances plus
``SANDBOX_CLOCK_PACE`` sandbox seconds per real second), measured from the
purchase: ``PRE_TRANSIT`` at once, ``TRANSIT`` after one sandbox hour, and
the final status after the rate's ``estimated_days`` sandbox days. The final
status is ``DELIVERED``, unless the ship-to ``street1``/``street2`` contains
``RETURN TO SENDER`` (→ ``RETURNED``) or ``UNDELIVERABLE`` (→ ``FAILURE``).
Every move is POSTed to ``{api_base}/webhooks/shippo?token={SHIPPO_WEBHOOK_TOKEN}``
as ``{"event": "track_updated", "test": true, "data": <track>}``. Shippo's
test numbers work too: carrier ``shippo``, tracking number
``SHIPPO_PRE_TRANSIT`` … ``SHIPPO_DELIVERED`` / ``_RETURNED`` / ``_FAILURE`` /
``_UNKNOWN``; unknown numbers of a known carrier answer status ``UNKNOWN``.

Control endpoints under ``/_sandbox/shippo``: ``POST /drop_webhooks
{"enabled": bool}`` loses (but logs) every tracking webhook while enabled;
``GET /webhooks`` lists every tracking webhook sent or dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from sandbox.state import SandboxState, StateDep, get_state, rfc3339

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/shippo", tags=["shippo"])
control_router = APIRouter(prefix="/_sandbox/shippo", tags=["sandbox"])

OBJECT_OWNER = "sandbox@fulfil.example"
CURRENCY = "USD"
TRANSIT_AFTER_SECONDS = 3600
DAY_SECONDS = 86_400
RETURN_MARKER = "RETURN TO SENDER"
FAILURE_MARKER = "UNDELIVERABLE"
TRACKING_POLL_INTERVAL = 0.25  # real seconds between checks while the clock has a pace

TrackingStatusName = Literal[
    "PRE_TRANSIT", "TRANSIT", "DELIVERED", "RETURNED", "FAILURE", "UNKNOWN"
]


# ------------------------------------------------------------ carriers, rates


@dataclass(frozen=True)
class Carrier:
    token: str
    provider: str
    tracking_url: str  # with {number}

    @property
    def carrier_account(self) -> str:
        return hashlib.md5(f"sandbox-{self.token}".encode(), usedforsecurity=False).hexdigest()

    def tracking_number(self) -> str:
        digits = string.digits
        if self.token == "ups":
            alnum = string.ascii_uppercase + digits
            return (
                "1Z"
                + "".join(secrets.choice(alnum) for _ in range(6))
                + "03"
                + "".join(secrets.choice(digits) for _ in range(8))
            )
        if self.token == "fedex":
            return "".join(secrets.choice(digits) for _ in range(12))
        return "9205" + "".join(secrets.choice(digits) for _ in range(18))


CARRIERS: dict[str, Carrier] = {
    "usps": Carrier(
        "usps", "USPS", "https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum={number}"
    ),
    "ups": Carrier("ups", "UPS", "https://www.ups.com/track?tracknum={number}"),
    "fedex": Carrier("fedex", "FedEx", "https://www.fedex.com/fedextrack/?trknbr={number}"),
}
TEST_CARRIER = "shippo"  # Shippo's test tracking numbers: SHIPPO_<STATUS>


@dataclass(frozen=True)
class ServiceLevel:
    token: str
    carrier: str
    name: str
    estimated_days: int
    first_pound: Decimal
    per_further_pound: Decimal
    duration_terms: str

    def amount(self, billable_pounds: int) -> Decimal:
        return self.first_pound + self.per_further_pound * (billable_pounds - 1)


SERVICE_LEVELS: tuple[ServiceLevel, ...] = (
    ServiceLevel(
        "usps_ground_advantage", "usps", "Ground Advantage", 5, Decimal("5.40"), Decimal("0.85"),
        "Delivery in 2 to 5 business days.",
    ),
    ServiceLevel(
        "usps_priority", "usps", "Priority Mail", 3, Decimal("7.58"), Decimal("1.35"),
        "Delivery within 1, 2, or 3 days based on where your package started and where "
        "it's being sent.",
    ),
    ServiceLevel(
        "ups_ground", "ups", "Ground", 4, Decimal("9.12"), Decimal("1.10"),
        "Delivery times vary. Delivered usually in 1-5 business days.",
    ),
    ServiceLevel(
        "fedex_2_day", "fedex", "FedEx 2Day®", 2, Decimal("18.45"), Decimal("2.05"),
        "Delivery in 2 business days by 4:30 p.m. to most areas.",
    ),
    ServiceLevel(
        "ups_next_day_air", "ups", "Next Day Air®", 1, Decimal("32.80"), Decimal("3.90"),
        "Next business day delivery by 10:30 a.m.",
    ),
)  # fmt: skip

_POUNDS_PER_UNIT = {
    "lb": Decimal(1),
    "oz": Decimal(1) / Decimal(16),
    "g": Decimal(1) / Decimal("453.59237"),
    "kg": Decimal(1000) / Decimal("453.59237"),
}
_DISTANCE_UNITS = frozenset({"cm", "in", "ft", "m", "mm", "yd"})
LABEL_FILE_TYPES = frozenset(
    {"PNG", "PNG_2.3x7.5", "PDF", "PDF_2.3x7.5", "PDF_4x6", "PDF_4x8", "PDF_A4", "PDF_A5",
     "PDF_A6", "ZPLII"}
)  # fmt: skip


# ------------------------------------------------------------------- errors


class ShippoError(Exception):
    """An error in Shippo's shape: ``{"detail": ...}`` or field → messages."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(json.dumps(body))
        self.status = status
        self.body = dict(body)


def not_found() -> ShippoError:
    return ShippoError(404, {"detail": "Not found."})


def invalid(field_name: str, message: str) -> ShippoError:
    return ShippoError(400, {field_name: [message]})


# --------------------------------------------------------------------- store


@dataclass
class TrackEvent:
    status: TrackingStatusName
    details: str
    substatus: tuple[str, str] | None  # (code, text)
    location: dict[str, str | None]
    due: float  # sandbox unix time
    object_id: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class Parcel:
    """A label's parcel moving along its tracking events."""

    carrier: str
    tracking_number: str
    transaction_id: str | None
    servicelevel: dict[str, Any]
    address_from: dict[str, str | None]
    address_to: dict[str, str | None]
    eta: float | None
    events: list[TrackEvent]
    metadata: str = ""
    reached: int = 0  # how many events have happened
    stopped: bool = False  # refunded: no further moves


@dataclass
class ShippoStore:
    shipments: dict[str, dict[str, Any]] = field(default_factory=dict)
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    transaction_by_rate: dict[str, str] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_by_transaction: dict[str, str] = field(default_factory=dict)
    # (carrier token, tracking number) → parcel
    parcels: dict[tuple[str, str], Parcel] = field(default_factory=dict)
    # outcome the ship-to address asks for, by shipment id
    outcomes: dict[str, TrackingStatusName] = field(default_factory=dict)
    drop_webhooks: bool = False
    webhook_log: list[dict[str, Any]] = field(default_factory=list)


def new_object_id() -> str:
    return secrets.token_hex(16)


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


# ---------------------------------------------------------------- addresses


_ADDRESS_FIELDS = (
    "name", "company", "street1", "street2", "street3", "street_no", "city", "state", "zip",
    "phone", "email",
)  # fmt: skip


def _address(body: Mapping[str, Any], name: str, now: str) -> dict[str, Any]:
    raw = body.get(name)
    if raw is None:
        raise invalid(name, "This field is required.")
    if isinstance(raw, str):
        raise invalid(name, "The sandbox takes addresses inline, not by object_id.")
    if not isinstance(raw, dict):
        raise invalid(name, "Expected an address object.")
    country = raw.get("country")
    if not isinstance(country, str) or not country.strip():
        raise ShippoError(400, {name: {"country": ["This field is required."]}})
    address: dict[str, Any] = {
        "object_id": new_object_id(),
        "object_created": now,
        "object_updated": now,
        "object_owner": OBJECT_OWNER,
        "is_complete": True,
        "country": country.strip().upper(),
        "is_residential": raw.get("is_residential"),
        "metadata": raw.get("metadata") or "",
        "test": True,
        "validation_results": {},
    }
    for key in _ADDRESS_FIELDS:
        value = raw.get(key)
        address[key] = value if isinstance(value, str) else ""
    return address


def _location(address: Mapping[str, Any]) -> dict[str, str | None]:
    return {
        "city": address.get("city") or None,
        "state": address.get("state") or None,
        "zip": address.get("zip") or None,
        "country": address.get("country") or None,
    }


def _outcome(address_to: Mapping[str, Any]) -> TrackingStatusName:
    street = f"{address_to.get('street1') or ''} {address_to.get('street2') or ''}".upper()
    if RETURN_MARKER in street:
        return "RETURNED"
    if FAILURE_MARKER in street:
        return "FAILURE"
    return "DELIVERED"


# ---------------------------------------------------------------- shipments


def _decimal(raw: Any, name: str) -> Decimal:
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise invalid(name, "A valid number is required.") from None
    if not value.is_finite() or value <= 0:
        raise invalid(name, "Ensure this value is greater than 0.")
    return value


def _parcels(body: Mapping[str, Any], now: str) -> tuple[list[dict[str, Any]], Decimal]:
    raw = body.get("parcels")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise invalid("parcels", "This field is required.")
    parcels: list[dict[str, Any]] = []
    pounds = Decimal(0)
    for index, item in enumerate(raw):
        if isinstance(item, str):
            raise invalid("parcels", "The sandbox takes parcels inline, not by object_id.")
        if not isinstance(item, dict):
            raise invalid("parcels", "Expected a parcel object.")
        errors: dict[str, list[str]] = {}
        for key in ("weight", "mass_unit", "length", "width", "height", "distance_unit"):
            if item.get(key) in (None, ""):
                errors[key] = ["This field is required."]
        if errors:
            raise ShippoError(400, {"parcels": {str(index): errors}})
        mass_unit = str(item["mass_unit"])
        if mass_unit not in _POUNDS_PER_UNIT:
            raise invalid("mass_unit", f'"{mass_unit}" is not a valid choice.')
        distance_unit = str(item["distance_unit"])
        if distance_unit not in _DISTANCE_UNITS:
            raise invalid("distance_unit", f'"{distance_unit}" is not a valid choice.')
        weight = _decimal(item["weight"], "weight")
        for key in ("length", "width", "height"):
            _decimal(item[key], key)
        pounds += weight * _POUNDS_PER_UNIT[mass_unit]
        parcels.append(
            {
                "object_id": new_object_id(),
                "object_created": now,
                "object_updated": now,
                "object_owner": OBJECT_OWNER,
                "object_state": "VALID",
                "mass_unit": mass_unit,
                "weight": str(item["weight"]),
                "distance_unit": distance_unit,
                "length": str(item["length"]),
                "width": str(item["width"]),
                "height": str(item["height"]),
                "metadata": item.get("metadata") or "",
                "extra": item.get("extra") if isinstance(item.get("extra"), dict) else {},
                "test": True,
            }
        )
    return parcels, pounds


def billable_pounds(total_pounds: Decimal) -> int:
    """The weight rates are priced on: whole pounds, rounded up, at least one."""
    return max(1, math.ceil(total_pounds))


def _rates(shipment_id: str, pounds: int, now: str) -> list[dict[str, Any]]:
    priced = [(level, level.amount(pounds)) for level in SERVICE_LEVELS]
    cheapest = min(amount for _, amount in priced)
    fastest = min(level.estimated_days for level in SERVICE_LEVELS)
    best_value = min(priced, key=lambda p: (p[1] * p[0].estimated_days, p[1]))[0]
    rates = []
    for level, amount in priced:
        carrier = CARRIERS[level.carrier]
        attributes = []
        if level is best_value:
            attributes.append("BESTVALUE")
        if amount == cheapest:
            attributes.append("CHEAPEST")
        if level.estimated_days == fastest:
            attributes.append("FASTEST")
        rates.append(
            {
                "object_id": new_object_id(),
                "object_created": now,
                "object_owner": OBJECT_OWNER,
                "shipment": shipment_id,
                "attributes": attributes,
                "amount": _money(amount),
                "currency": CURRENCY,
                "amount_local": _money(amount),
                "currency_local": CURRENCY,
                "provider": carrier.provider,
                "provider_image_75": f"https://shippo-static.s3.amazonaws.com/providers/75/{carrier.provider}.png",
                "provider_image_200": f"https://shippo-static.s3.amazonaws.com/providers/200/{carrier.provider}.png",
                "servicelevel": {
                    "name": level.name,
                    "token": level.token,
                    "terms": "",
                    "extended_token": level.token,
                    "parent_servicelevel": None,
                },
                "estimated_days": level.estimated_days,
                "arrives_by": None,
                "duration_terms": level.duration_terms,
                "messages": [],
                "carrier_account": carrier.carrier_account,
                "test": True,
                "zone": "1",
            }
        )
    return rates


def create_shipment(
    state: SandboxState, store: ShippoStore, body: Mapping[str, Any]
) -> dict[str, Any]:
    now = rfc3339(time.time())
    address_from = _address(body, "address_from", now)
    address_to = _address(body, "address_to", now)
    parcels, pounds = _parcels(body, now)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, str):
        raise invalid("metadata", "Not a valid string.")
    shipment_id = new_object_id()
    rates = _rates(shipment_id, billable_pounds(pounds), now)
    shipment: dict[str, Any] = {
        "object_id": shipment_id,
        "object_created": now,
        "object_updated": now,
        "object_owner": OBJECT_OWNER,
        "status": "SUCCESS",
        "address_from": address_from,
        "address_to": address_to,
        "address_return": address_from,
        "parcels": parcels,
        "shipment_date": now,
        "extra": body.get("extra") if isinstance(body.get("extra"), dict) else {},
        "customs_declaration": None,
        "carrier_accounts": [c.carrier_account for c in CARRIERS.values()],
        "metadata": metadata or "",
        "messages": [],
        "rates": rates,
        "test": True,
    }
    store.shipments[shipment_id] = shipment
    store.outcomes[shipment_id] = _outcome(address_to)
    for rate in rates:
        store.rates[rate["object_id"]] = rate
    return shipment


def _shipment(store: ShippoStore, shipment_id: str) -> dict[str, Any]:
    shipment = store.shipments.get(shipment_id)
    if shipment is None:
        raise not_found()
    return shipment


# ---------------------------------------------------------------- tracking


def _events(
    outcome: TrackingStatusName,
    carrier: Carrier,
    level: ServiceLevel,
    address_from: Mapping[str, Any],
    address_to: Mapping[str, Any],
    start: float,
) -> list[TrackEvent]:
    origin, destination = _location(address_from), _location(address_to)
    arrival = start + level.estimated_days * DAY_SECONDS
    final = {
        "DELIVERED": TrackEvent(
            "DELIVERED",
            "Your item was delivered.",
            ("delivered", "Package has been delivered."),
            destination,
            arrival,
        ),
        "RETURNED": TrackEvent(
            "RETURNED",
            "Return to sender: the addressee is unknown at this address.",
            ("return_to_sender", "Package is being returned to the sender."),
            origin,
            arrival,
        ),
        "FAILURE": TrackEvent(
            "FAILURE",
            "The package could not be delivered: the address does not exist.",
            ("package_undeliverable", "Package is undeliverable."),
            destination,
            arrival,
        ),
    }.get(outcome)
    if final is None:
        raise ValueError(f"no final tracking event {outcome!r}")
    return [
        TrackEvent(
            "PRE_TRANSIT", f"Shipping label created, {carrier.provider} awaiting item.",
            ("information_received", "Information about the package received."), origin, start,
        ),
        TrackEvent(
            "TRANSIT", f"Accepted at {carrier.provider} origin facility.",
            ("package_accepted", "Package has been accepted into the carrier network."), origin,
            start + TRANSIT_AFTER_SECONDS,
        ),
        final,
    ]  # fmt: skip


def _status_object(event: TrackEvent) -> dict[str, Any]:
    at = rfc3339(event.due)
    return {
        "object_id": event.object_id,
        "object_created": at,
        "object_updated": at,
        "status": event.status,
        "status_details": event.details,
        "status_date": at,
        "substatus": (
            {"code": event.substatus[0], "text": event.substatus[1], "action_required": False}
            if event.substatus is not None
            else None
        ),
        "location": event.location,
    }


def track_object(parcel: Parcel, reached: int | None = None) -> dict[str, Any]:
    """The Shippo track of ``parcel`` as it stood after ``reached`` events (default: now)."""
    count = parcel.reached if reached is None else reached
    history = [_status_object(e) for e in parcel.events[:count]]
    eta = rfc3339(parcel.eta) if parcel.eta is not None else None
    return {
        "carrier": parcel.carrier,
        "tracking_number": parcel.tracking_number,
        "address_from": _location(parcel.address_from),
        "address_to": _location(parcel.address_to),
        "transaction": parcel.transaction_id,
        "original_eta": eta,
        "eta": eta,
        "servicelevel": parcel.servicelevel,
        "metadata": parcel.metadata or None,
        "messages": [],
        "test": True,
        "tracking_status": history[-1] if history else None,
        "tracking_history": history,
    }


def _test_parcel(tracking_number: str, now: float) -> Parcel | None:
    """Shippo's test numbers (carrier ``shippo``): ``SHIPPO_DELIVERED`` etc."""
    status = tracking_number.upper().removeprefix("SHIPPO_")
    if not tracking_number.upper().startswith("SHIPPO_"):
        return None
    origin: dict[str, str | None] = {
        "city": "San Francisco",
        "state": "CA",
        "zip": "94103",
        "country": "US",
    }
    destination: dict[str, str | None] = {
        "city": "Chicago", "state": "IL", "zip": "60611", "country": "US",
    }  # fmt: skip
    level = SERVICE_LEVELS[1]
    start = now - level.estimated_days * DAY_SECONDS
    outcome: TrackingStatusName = "DELIVERED"
    if status == "RETURNED":
        outcome = "RETURNED"
    elif status == "FAILURE":
        outcome = "FAILURE"
    events = _events(outcome, CARRIERS["usps"], level, origin, destination, start)
    reached = {"PRE_TRANSIT": 1, "TRANSIT": 2, "DELIVERED": 3, "RETURNED": 3, "FAILURE": 3}
    if status == "UNKNOWN":
        return _unknown_parcel(TEST_CARRIER, tracking_number, now)
    if status not in reached:
        return None
    return Parcel(
        carrier=TEST_CARRIER,
        tracking_number=tracking_number,
        transaction_id=None,
        servicelevel={"name": level.name, "token": level.token},
        address_from=origin,
        address_to=destination,
        eta=start + level.estimated_days * DAY_SECONDS,
        events=events,
        reached=reached[status],
        stopped=True,
    )


def _unknown_parcel(carrier: str, tracking_number: str, now: float) -> Parcel:
    return Parcel(
        carrier=carrier,
        tracking_number=tracking_number,
        transaction_id=None,
        servicelevel={"name": None, "token": None},
        address_from={},
        address_to={},
        eta=None,
        events=[
            TrackEvent(
                "UNKNOWN", "The carrier has not provided tracking information for this number.",
                None, {}, now,
            )
        ],
        reached=1,
        stopped=True,
    )  # fmt: skip


def _find_parcel(state: SandboxState, store: ShippoStore, carrier: str, number: str) -> Parcel:
    token = carrier.strip().lower()
    parcel = store.parcels.get((token, number))
    if parcel is not None:
        return parcel
    now = state.clock.now()
    if token == TEST_CARRIER:
        test = _test_parcel(number, now)
        if test is None:
            raise invalid("tracking_number", f"Unknown test tracking number {number!r}.")
        return test
    if token not in CARRIERS:
        raise invalid("carrier", f'"{carrier}" is not a valid carrier token.')
    return _unknown_parcel(token, number, now)


def _send_track_webhook(state: SandboxState, store: ShippoStore, track: dict[str, Any]) -> None:
    status = (track.get("tracking_status") or {}).get("status")
    entry: dict[str, Any] = {
        "carrier": track["carrier"],
        "tracking_number": track["tracking_number"],
        "transaction": track["transaction"],
        "status": status,
        "status_date": (track.get("tracking_status") or {}).get("status_date"),
        "dropped": store.drop_webhooks,
        "delivery_id": None,
        "at": rfc3339(time.time()),
    }
    if not store.drop_webhooks:
        settings = state.settings
        url = (
            settings.api_base.rstrip("/")
            + "/webhooks/shippo?token="
            + quote(settings.shippo_webhook_token, safe="")
        )
        body = {"event": "track_updated", "test": True, "data": track}
        delivery = state.webhooks.deliver(
            url,
            json.dumps(body).encode(),
            description=f"shippo track_updated {track['tracking_number']} {status}",
        )
        entry["delivery_id"] = delivery.id
    store.webhook_log.append(entry)


def move_parcels(state: SandboxState) -> int:
    """Move every parcel to where the sandbox clock says it is; one webhook per move."""
    store = state.store(ShippoStore)
    now = state.clock.now()
    moves = 0
    for parcel in list(store.parcels.values()):
        while (
            not parcel.stopped
            and parcel.reached < len(parcel.events)
            and parcel.events[parcel.reached].due <= now
        ):
            parcel.reached += 1
            moves += 1
            _record_tracking(state, store, parcel)
            _send_track_webhook(state, store, track_object(parcel))
    return moves


def _record_tracking(state: SandboxState, store: ShippoStore, parcel: Parcel) -> None:
    status = parcel.events[parcel.reached - 1].status
    if parcel.transaction_id is None:
        return
    transaction = store.transactions.get(parcel.transaction_id)
    if transaction is not None:
        transaction["tracking_status"] = status
        transaction["object_updated"] = rfc3339(time.time())
    state.ledger.put("labels", parcel.transaction_id, {"tracking_status": status})


def install(state: SandboxState) -> None:
    """Move parcels whenever ``POST /_sandbox/clock/advance`` moves the clock."""

    async def on_advance(seconds: float, now: float) -> None:
        move_parcels(state)

    state.clock.on_advance(on_advance)


async def follow_clock_pace(state: SandboxState) -> None:
    """While the clock has a pace, parcels also move with real time (a lifespan task)."""
    while True:
        try:
            move_parcels(state)
        except Exception:  # keep the ticker alive
            logger.exception("moving Shippo parcels failed")
        await asyncio.sleep(TRACKING_POLL_INTERVAL)


def start_tracking(state: SandboxState) -> asyncio.Task[None] | None:
    """Start :func:`follow_clock_pace` when the clock has a pace (call in the app lifespan)."""
    if state.clock.pace <= 0:
        return None
    return asyncio.get_running_loop().create_task(follow_clock_pace(state))


async def stop_tracking(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -------------------------------------------------------------- transactions


def _record_label(state: SandboxState, transaction: dict[str, Any], rate: dict[str, Any]) -> None:
    parcel_key = (transaction["_carrier"], transaction["tracking_number"])
    parcel = state.store(ShippoStore).parcels.get(parcel_key)
    state.ledger.put(
        "labels",
        transaction["object_id"],
        {
            "status": transaction["status"],
            "rate": rate["object_id"],
            "shipment": rate["shipment"],
            "carrier": transaction["_carrier"],
            "provider": rate["provider"],
            "servicelevel": rate["servicelevel"]["token"],
            "servicelevel_name": rate["servicelevel"]["name"],
            "amount": rate["amount"],
            "currency": rate["currency"],
            "tracking_number": transaction["tracking_number"],
            "tracking_status": transaction["tracking_status"],
            "final_status": parcel.events[-1].status if parcel else None,
            "label_url": transaction["label_url"],
            "metadata": transaction["metadata"],
            "idempotency_key": None,
            "created": transaction["object_created"],
        },
    )


def _core_rate(rate: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "object_id": rate["object_id"],
        "amount": rate["amount"],
        "currency": rate["currency"],
        "amount_local": rate["amount_local"],
        "currency_local": rate["currency_local"],
        "provider": rate["provider"],
        "carrier_account": rate["carrier_account"],
        "servicelevel_name": rate["servicelevel"]["name"],
        "servicelevel_token": rate["servicelevel"]["token"],
    }


def _present_transaction(transaction: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in transaction.items() if not k.startswith("_")}


def _instant_rate(
    state: SandboxState, store: ShippoStore, body: Mapping[str, Any]
) -> dict[str, Any]:
    """A label bought in one call (``shipment`` + ``carrier_account`` + ``servicelevel_token``)."""
    shipment_body = body.get("shipment")
    if not isinstance(shipment_body, dict):
        raise invalid("rate", "This field is required.")
    token = body.get("servicelevel_token")
    level = next((lv for lv in SERVICE_LEVELS if lv.token == token), None)
    if level is None:
        raise invalid("servicelevel_token", f'"{token}" is not a valid service level token.')
    shipment = create_shipment(state, store, shipment_body)
    return next(r for r in shipment["rates"] if r["servicelevel"]["token"] == level.token)


def create_transaction(
    state: SandboxState, store: ShippoStore, body: Mapping[str, Any], base_url: str
) -> dict[str, Any]:
    rate_id = body.get("rate")
    if rate_id is None:
        rate = _instant_rate(state, store, body)
    else:
        if not isinstance(rate_id, str):
            raise invalid("rate", "Expected the object_id of a rate.")
        found = store.rates.get(rate_id)
        if found is None:
            raise invalid("rate", f"Rate object with object_id {rate_id} does not exist.")
        rate = found
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, str):
        raise invalid("metadata", "Not a valid string.")
    label_file_type = body.get("label_file_type") or "PDF_4x6"
    if label_file_type not in LABEL_FILE_TYPES:
        raise invalid("label_file_type", f'"{label_file_type}" is not a valid choice.')

    existing = store.transaction_by_rate.get(rate["object_id"])
    if existing is not None:
        return store.transactions[existing]

    level = next(lv for lv in SERVICE_LEVELS if lv.token == rate["servicelevel"]["token"])
    carrier = CARRIERS[level.carrier]
    shipment = store.shipments[rate["shipment"]]
    purchased = state.clock.now()
    now = rfc3339(time.time())
    transaction_id = new_object_id()
    tracking_number = carrier.tracking_number()
    events = _events(
        store.outcomes.get(shipment["object_id"], "DELIVERED"),
        carrier,
        level,
        shipment["address_from"],
        shipment["address_to"],
        purchased,
    )
    eta = purchased + level.estimated_days * DAY_SECONDS
    transaction: dict[str, Any] = {
        "object_id": transaction_id,
        "object_created": now,
        "object_updated": now,
        "object_owner": OBJECT_OWNER,
        "object_state": "VALID",
        "status": "SUCCESS",
        "test": True,
        # The rate's id; a label bought in one call (instalabel) shows a simplified rate.
        "rate": _core_rate(rate) if rate_id is None else rate["object_id"],
        "parcel": shipment["parcels"][0]["object_id"],
        "tracking_number": tracking_number,
        "tracking_status": "UNKNOWN",
        "tracking_url_provider": carrier.tracking_url.format(number=tracking_number),
        "eta": rfc3339(eta),
        "label_file_type": label_file_type,
        "label_url": f"{base_url}/shippo/labels/{transaction_id}.pdf",
        "commercial_invoice_url": None,
        "qr_code_url": None,
        # The SDK needs the key (its default is a sentinel it cannot parse); null is fine.
        "created_by": None,
        "metadata": metadata or "",
        "messages": [],
        "_carrier": carrier.token,
        "_rate": rate["object_id"],
    }
    store.transactions[transaction_id] = transaction
    store.transaction_by_rate[rate["object_id"]] = transaction_id
    store.parcels[(carrier.token, tracking_number)] = Parcel(
        carrier=carrier.token,
        tracking_number=tracking_number,
        transaction_id=transaction_id,
        servicelevel={"name": level.name, "token": level.token},
        address_from=shipment["address_from"],
        address_to=shipment["address_to"],
        eta=eta,
        events=events,
        metadata=metadata or "",
    )
    _record_label(state, transaction, rate)
    move_parcels(state)  # PRE_TRANSIT now, and its webhook
    return transaction


def _transaction(store: ShippoStore, transaction_id: str) -> dict[str, Any]:
    transaction = store.transactions.get(transaction_id)
    if transaction is None:
        raise not_found()
    return transaction


# ------------------------------------------------------------------- refunds


def create_refund(
    state: SandboxState, store: ShippoStore, body: Mapping[str, Any]
) -> dict[str, Any]:
    transaction_id = body.get("transaction")
    if not isinstance(transaction_id, str) or not transaction_id:
        raise invalid("transaction", "Expected the object_id of a transaction.")
    transaction = store.transactions.get(transaction_id)
    if transaction is None:
        raise invalid("transaction", f"Transaction with object_id {transaction_id} does not exist.")
    existing = store.refund_by_transaction.get(transaction_id)
    if existing is not None:
        return store.refunds[existing]

    parcel = store.parcels[(transaction["_carrier"], transaction["tracking_number"])]
    unused = parcel.reached <= 1  # still PRE_TRANSIT
    now = rfc3339(time.time())
    refund: dict[str, Any] = {
        "object_id": new_object_id(),
        "object_created": now,
        "object_updated": now,
        "object_owner": OBJECT_OWNER,
        "status": "SUCCESS" if unused else "ERROR",
        "test": True,
        "transaction": transaction_id,
    }
    store.refunds[refund["object_id"]] = refund
    store.refund_by_transaction[transaction_id] = refund["object_id"]
    if unused:
        parcel.stopped = True
        transaction["status"] = "REFUNDED"
    else:
        transaction["status"] = "REFUNDREJECTED"
    transaction["object_updated"] = now
    rate = store.rates[transaction["_rate"]]
    state.ledger.put("labels", transaction_id, {"status": transaction["status"]})
    state.ledger.put(
        "label_refunds",
        refund["object_id"],
        {
            "status": refund["status"],
            "transaction": transaction_id,
            "carrier": transaction["_carrier"],
            "tracking_number": transaction["tracking_number"],
            "amount": rate["amount"],
            "currency": rate["currency"],
            "metadata": transaction["metadata"],
            "idempotency_key": None,
            "created": now,
        },
    )
    return refund


# --------------------------------------------------------------- label files


def label_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` (the sandbox's label file)."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 14 Tf 36 240 Td ({safe}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 288 432] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


# ------------------------------------------------------- request execution


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json")


def _authenticated(request: Request) -> Response | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        return _json(401, {"detail": "Authentication credentials were not provided."})
    if scheme != "ShippoToken" or not key.strip():
        return _json(401, {"detail": "Invalid token."})
    return None


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ShippoError(400, {"detail": f"JSON parse error - {exc}"}) from None
    if not isinstance(body, dict):
        raise ShippoError(400, {"detail": "Expected a JSON object."})
    return body


ShippoCall = Callable[[SandboxState, ShippoStore], Awaitable[dict[str, Any]]]


async def _run(request: Request, status: int, call: ShippoCall) -> Response:
    """Authenticate, run ``call(state, store)`` and answer JSON (or Shippo's error)."""
    denied = _authenticated(request)
    if denied is not None:
        return denied
    state = get_state(request)
    try:
        result = await call(state, state.store(ShippoStore))
    except ShippoError as exc:
        return _json(exc.status, exc.body)
    return _json(status, result)


@router.post("/shipments")
async def post_shipment(request: Request) -> Response:
    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        return create_shipment(state, store, await _body(request))

    return await _run(request, 201, call)


@router.get("/shipments/{shipment_id}")
async def get_shipment(request: Request, shipment_id: str) -> Response:
    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        return _shipment(store, shipment_id)

    return await _run(request, 200, call)


def _rate_list(rates: list[dict[str, Any]]) -> dict[str, Any]:
    return {"next": None, "previous": None, "count": len(rates), "results": rates}


@router.get("/shipments/{shipment_id}/rates")
async def list_shipment_rates(request: Request, shipment_id: str) -> Response:
    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        return _rate_list(_shipment(store, shipment_id)["rates"])

    return await _run(request, 200, call)


@router.get("/shipments/{shipment_id}/rates/{currency_code}")
async def list_shipment_rates_in_currency(
    request: Request, shipment_id: str, currency_code: str
) -> Response:
    """Rates are priced in USD only; another currency answers the same USD rates."""

    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        return _rate_list(_shipment(store, shipment_id)["rates"])

    return await _run(request, 200, call)


@router.get("/rates/{rate_id}")
async def get_rate(request: Request, rate_id: str) -> Response:
    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        rate = store.rates.get(rate_id)
        if rate is None:
            raise not_found()
        return rate

    return await _run(request, 200, call)


@router.post("/transactions")
async def post_transaction(request: Request) -> Response:
    base_url = get_state(request).settings.sandbox_base.rstrip("/")

    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        body = await _body(request)
        return _present_transaction(create_transaction(state, store, body, base_url))

    return await _run(request, 201, call)


@router.get("/transactions/{transaction_id}")
async def get_transaction(request: Request, transaction_id: str) -> Response:
    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        return _present_transaction(_transaction(store, transaction_id))

    return await _run(request, 200, call)


@router.post("/refunds")
async def post_refund(request: Request) -> Response:
    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        return create_refund(state, store, await _body(request))

    return await _run(request, 201, call)


@router.get("/refunds/{refund_id}")
async def get_refund(request: Request, refund_id: str) -> Response:
    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        refund = store.refunds.get(refund_id)
        if refund is None:
            raise not_found()
        return refund

    return await _run(request, 200, call)


@router.get("/tracks/{carrier}/{tracking_number}")
async def get_track(request: Request, carrier: str, tracking_number: str) -> Response:
    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        return track_object(_find_parcel(state, store, carrier, tracking_number))

    return await _run(request, 200, call)


@router.post("/tracks")
async def register_track(request: Request) -> Response:
    """Register a tracking webhook: answers the track; test numbers send one webhook now."""

    async def call(state: SandboxState, store: ShippoStore) -> dict[str, Any]:
        body = await _body(request)
        carrier, number = body.get("carrier"), body.get("tracking_number")
        if not isinstance(carrier, str) or not carrier:
            raise invalid("carrier", "This field is required.")
        if not isinstance(number, str) or not number:
            raise invalid("tracking_number", "This field is required.")
        parcel = _find_parcel(state, store, carrier, number)
        metadata = body.get("metadata")
        if isinstance(metadata, str) and metadata:
            parcel.metadata = metadata
        track = track_object(parcel)
        if parcel.carrier == TEST_CARRIER:
            _send_track_webhook(state, store, track)
        return track

    return await _run(request, 200, call)


@router.get("/labels/{transaction_id}.pdf", include_in_schema=False)
async def get_label_file(request: Request, transaction_id: str) -> Response:
    """The label file behind ``label_url`` (no authentication, like Shippo's file links)."""
    transaction = get_state(request).store(ShippoStore).transactions.get(transaction_id)
    if transaction is None:
        return _json(404, {"detail": "Not found."})
    text = f"{transaction['_carrier'].upper()} {transaction['tracking_number']} (sandbox)"
    return Response(label_pdf(text), media_type="application/pdf")


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def unknown_shippo_path(path: str) -> Response:
    return _json(404, {"detail": "Not found."})


# ---------------------------------------------------------- control routes


class DropWebhooksIn(BaseModel):
    enabled: bool = True


class DropWebhooksOut(BaseModel):
    drop_webhooks: bool


@control_router.post("/drop_webhooks")
async def drop_webhooks(body: DropWebhooksIn, state: StateDep) -> DropWebhooksOut:
    """While enabled, every ``track_updated`` webhook is lost (logged as ``dropped``)."""
    store = state.store(ShippoStore)
    store.drop_webhooks = body.enabled
    return DropWebhooksOut(drop_webhooks=store.drop_webhooks)


@control_router.get("/webhooks")
async def list_track_webhooks(state: StateDep) -> list[dict[str, Any]]:
    """Every tracking webhook, oldest first:
    ``{"carrier", "tracking_number", "transaction", "status", "status_date", "dropped",
    "delivery_id", "at"}``."""
    return list(state.store(ShippoStore).webhook_log)
