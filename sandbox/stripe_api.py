"""A stateful Stripe stand-in: the subset of ``/v1`` the engine uses.

Served under ``/stripe`` with Stripe's paths, form-encoded bodies (nested
``metadata[order_id]=...``), response shapes, error shapes and idempotency
keys, so the official SDK works unchanged::

    stripe.StripeClient(
        api_key,
        base_addresses={"api": "http://127.0.0.1:8100/stripe"},
        http_client=stripe.HTTPXClient(),
    )

Test payment methods decide the outcome of a confirmation (see
``_CARD_OUTCOMES``). Payment events are delivered, signed with
``STRIPE_WEBHOOK_SECRET``, to ``{api_base}/webhooks/stripe``.

Connect (separate charges and transfers): accounts, transfers (checked against
the destination's capabilities and their ``source_transaction``), reversals,
disputes, each listable with Stripe's cursor pagination. ``transfer.*`` and
``charge.dispute.*`` events are delivered like the payment events.

Idempotency keys are honoured on every POST as Stripe does: the same key with
the same parameters replays the saved response (``Idempotent-Replayed: true``);
with other parameters it answers 400 ``idempotency_error``. A request refused
by validation saves nothing, so it can be retried under its key once fixed.

Control endpoints under ``/_sandbox/stripe``: complete (or fail) the
authentication of a ``requires_action`` payment; open a dispute on a charge and
close it as won or lost; restrict a connected account (and lift it).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import operator
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.state import SandboxState, StateDep, get_state, new_id, rfc3339

router = APIRouter(prefix="/stripe", tags=["stripe"])
control_router = APIRouter(prefix="/_sandbox/stripe", tags=["sandbox"])

DEFAULT_API_VERSION = "2026-10-28.endive"
DOC_URL = "https://docs.stripe.com/error-codes"


# ------------------------------------------------------------------- errors


class StripeError(Exception):
    """An error answered in Stripe's shape ``{"error": {...}}``.

    ``replayable`` errors are saved under the idempotency key and replayed,
    like Stripe does for requests that started executing (a card decline);
    parameter errors are not saved.
    """

    def __init__(self, status: int, error: dict[str, Any], *, replayable: bool = False) -> None:
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error
        self.replayable = replayable


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeError:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"{DOC_URL}#{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return StripeError(status, error)


def resource_missing(label: str, object_id: str, param: str) -> StripeError:
    return invalid_request(
        f"No such {label}: '{object_id}'", param=param, code="resource_missing", status=404
    )


def unexpected_state(message: str, *, param: str | None = None) -> StripeError:
    return invalid_request(message, param=param, code="payment_intent_unexpected_state")


# ------------------------------------------------------ form-encoded params

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")
# Maps whose keys are user data, never turned into lists.
_FREE_FORM_MAPS = frozenset({"metadata"})


def decode_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding → nested dicts and lists.

    ``metadata[order_id]=1`` → ``{"metadata": {"order_id": "1"}}``;
    ``payment_method_types[0]=card`` (or ``[]=``) → ``{"payment_method_types": ["card"]}``.
    Values stay strings; operations coerce the ones they read.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY_RE.match(key)
        parts = [match.group(1), *_PART_RE.findall(match.group(2))] if match else [key]
        node = root
        for index, part in enumerate(parts):
            name = part if part != "" else str(len(node))
            if index == len(parts) - 1:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = node[name] = {}
                node = child
    result = _listify(root, parent=None)
    assert isinstance(result, dict)
    return result


def _listify(node: Any, parent: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, parent=k) for k, v in node.items()}
    if parent not in _FREE_FORM_MAPS and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _check_known(params: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise invalid_request(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )


def _str(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise invalid_request(
                f"Missing required param: {name}.", param=name, code="parameter_missing"
            )
        return None
    if not isinstance(value, str):
        raise invalid_request(
            f"Invalid string: {name}", param=name, code="parameter_invalid_string"
        )
    return value


def _int(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    raw = _str(params, name, required=required)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid_request(
            f"Invalid integer: {raw}", param=name, code="parameter_invalid_integer"
        ) from None
    if value < 1:
        raise invalid_request(
            "This value must be greater than or equal to 1.", param=name, code="amount_too_small"
        )
    return value


def _bool(params: dict[str, Any], name: str) -> bool:
    raw = _str(params, name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise invalid_request(
            f"Invalid boolean: {raw}", param=name, code="parameter_invalid_boolean"
        )
    return raw == "true"


def _metadata(params: dict[str, Any], current: dict[str, str] | None = None) -> dict[str, str]:
    """Stripe's metadata semantics: keys merge, an empty value deletes a key."""
    result = dict(current or {})
    value = params.get("metadata")
    if value is None:
        return result
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid_request("Invalid hash", param="metadata", code="parameter_invalid_hash")
    for key, item in value.items():
        if item == "":
            result.pop(key, None)
        elif isinstance(item, str):
            result[key] = item
        else:
            raise invalid_request(
                "Metadata values must be strings", param=f"metadata[{key}]", code="invalid_metadata"
            )
    return result


def _choice(params: dict[str, Any], name: str, allowed: Iterable[str]) -> str | None:
    value = _str(params, name)
    options = list(allowed)
    if value is not None and value not in options:
        raise invalid_request(
            f"Invalid {name}: must be one of {', '.join(options)}",
            param=name,
            code="parameter_invalid_string",
        )
    return value


def _expand(params: dict[str, Any]) -> list[str]:
    value = params.get("expand")
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


# --------------------------------------------------------------------- store


@dataclass
class IdempotentResult:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    body: bytes
    request_id: str


@dataclass
class StripeStore:
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfer_reversals: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (api key, idempotency key) → the saved response
    idempotency: dict[tuple[str, str], IdempotentResult] = field(default_factory=dict)


@dataclass
class StripeCall:
    """One API request, as an operation sees it."""

    state: SandboxState
    store: StripeStore
    params: dict[str, Any]
    idempotency_key: str | None
    request_id: str
    api_version: str

    def now(self) -> int:
        return int(time.time())


Operation = Callable[[StripeCall], dict[str, Any]]


# --------------------------------------------------------------------- lists

_LIST_PARAMS = _names("limit starting_after ending_before expand created")
_RANGE_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _created_filter(params: dict[str, Any]) -> Callable[[int], bool]:
    """``created=<unix>`` or ``created[gt|gte|lt|lte]=<unix>``, as a predicate."""
    created = params.get("created")
    if created is None or created == "":
        return lambda _value: True
    if isinstance(created, str):
        exact = _int_value(created, "created")
        return lambda value: value == exact
    if not isinstance(created, dict):
        raise invalid_request("Invalid hash", param="created", code="parameter_invalid_hash")
    bounds: list[tuple[Callable[[int, int], bool], int]] = []
    for comparison, raw in created.items():
        compare = _RANGE_OPERATORS.get(comparison)
        if compare is None or not isinstance(raw, str):
            raise invalid_request(
                f"Received unknown parameter: created[{comparison}]",
                param=f"created[{comparison}]",
                code="parameter_unknown",
            )
        bounds.append((compare, _int_value(raw, f"created[{comparison}]")))
    return lambda value: all(compare(value, bound) for compare, bound in bounds)


def _int_value(raw: str, param: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise invalid_request(
            f"Invalid integer: {raw}", param=param, code="parameter_invalid_integer"
        ) from None


def _list(
    call: StripeCall,
    objects: dict[str, dict[str, Any]],
    *,
    url: str,
    label: str,
    where: Callable[[dict[str, Any]], bool] = lambda _obj: True,
    present: Callable[[dict[str, Any]], dict[str, Any]] = copy.deepcopy,
    filters: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A Stripe list: newest first, ``limit`` (1-100, default 10), cursors and ``has_more``.

    ``starting_after`` gives the objects older than the cursor, ``ending_before``
    the ones newer than it (still newest first), like Stripe, so the SDK's
    ``auto_paging_iter`` walks every page. ``objects`` is a store in creation order.
    """
    params = call.params
    _check_known(params, _LIST_PARAMS | filters)
    limit = _int(params, "limit") or 10
    if limit > 100:
        raise invalid_request(
            "This value must be less than or equal to 100.",
            param="limit",
            code="parameter_invalid_integer",
        )
    starting_after = _str(params, "starting_after")
    ending_before = _str(params, "ending_before")
    if starting_after is not None and ending_before is not None:
        raise invalid_request(
            "You may only specify one of these parameters: starting_after, ending_before."
        )
    created = _created_filter(params)
    position = {object_id: index for index, object_id in enumerate(objects)}
    newest_first = [o for o in reversed(objects.values()) if where(o) and created(o["created"])]

    def cursor(name: str, object_id: str) -> int:
        if object_id not in position:
            raise resource_missing(label, object_id, name)
        return position[object_id]

    if starting_after is not None:
        after = cursor("starting_after", starting_after)
        pool = [o for o in newest_first if position[o["id"]] < after]
        data, has_more = pool[:limit], len(pool) > limit
    elif ending_before is not None:
        before = cursor("ending_before", ending_before)
        pool = [o for o in newest_first if position[o["id"]] > before]
        data, has_more = pool[-limit:], len(pool) > limit
    else:
        data, has_more = newest_first[:limit], len(newest_first) > limit
    return {
        "object": "list",
        "data": [present(o) for o in data],
        "has_more": has_more,
        "url": url,
    }


# ------------------------------------------------------------------- events


def sign_stripe_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def emit_event(
    state: SandboxState,
    event_type: str,
    obj: dict[str, Any],
    *,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    api_version: str = DEFAULT_API_VERSION,
) -> dict[str, Any]:
    """Record an event and deliver it, signed, to ``{api_base}/webhooks/stripe``."""
    store = state.store(StripeStore)
    event: dict[str, Any] = {
        "id": new_id("evt"),
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()),
        "data": {"object": copy.deepcopy(obj)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }
    store.events[event["id"]] = event
    secret = state.settings.stripe_webhook_secret
    state.webhooks.deliver(
        state.settings.api_base.rstrip("/") + "/webhooks/stripe",
        json.dumps(event).encode(),
        sign=lambda body: {"Stripe-Signature": sign_stripe_payload(body, secret)},
        description=f"stripe {event_type} {event['id']}",
    )
    return event


def _emit(call: StripeCall, event_type: str, obj: dict[str, Any]) -> None:
    emit_event(
        call.state,
        event_type,
        obj,
        request_id=call.request_id,
        idempotency_key=call.idempotency_key,
        api_version=call.api_version,
    )


# ---------------------------------------------------------- payment methods


@dataclass(frozen=True)
class CardOutcome:
    result: Literal["succeed", "decline", "authenticate"]
    brand: str = "visa"
    last4: str = "4242"
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None


_DECLINED = "Your card was declined."
_CARD_OUTCOMES: dict[str, CardOutcome] = {
    "pm_card_visa": CardOutcome("succeed"),
    "pm_card_visa_debit": CardOutcome("succeed", last4="5556"),
    "pm_card_mastercard": CardOutcome("succeed", brand="mastercard", last4="4444"),
    "pm_card_amex": CardOutcome("succeed", brand="amex", last4="8431"),
    "pm_card_chargeDeclined": CardOutcome(
        "decline", last4="0002", code="card_declined", decline_code="generic_decline",
        message=_DECLINED,
    ),
    "pm_card_chargeDeclinedInsufficientFunds": CardOutcome(
        "decline", last4="9995", code="card_declined", decline_code="insufficient_funds",
        message="Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedFraudulent": CardOutcome(
        "decline", last4="0019", code="card_declined", decline_code="fraudulent",
        message=_DECLINED,
    ),
    "pm_card_chargeDeclinedExpiredCard": CardOutcome(
        "decline", last4="0069", code="expired_card", decline_code="expired_card",
        message="Your card has expired.",
    ),
    "pm_card_authenticationRequired": CardOutcome("authenticate", last4="3184"),
    "pm_card_threeDSecure2Required": CardOutcome("authenticate", last4="3220"),
}  # fmt: skip


def _card_outcome(payment_method: str) -> CardOutcome:
    outcome = _CARD_OUTCOMES.get(payment_method)
    if outcome is None:
        raise invalid_request(
            f"No such PaymentMethod: '{payment_method}'",
            param="payment_method",
            code="resource_missing",
        )
    return outcome


def _payment_method_object(payment_method: str, outcome: CardOutcome) -> dict[str, Any]:
    return {
        "id": payment_method,
        "object": "payment_method",
        "type": "card",
        "card": {
            "brand": outcome.brand,
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "funding": "debit" if payment_method.endswith("_debit") else "credit",
            "last4": outcome.last4,
        },
        "livemode": False,
        "metadata": {},
    }


# ------------------------------------------------------------------- ledger


def _record_payment_intent(call: StripeCall, pi: dict[str, Any]) -> None:
    charge = call.store.charges.get(pi["latest_charge"] or "")
    call.state.ledger.put(
        "payment_intents",
        pi["id"],
        {
            "status": pi["status"],
            "amount": pi["amount"],
            "amount_received": pi["amount_received"],
            "amount_refunded": charge["amount_refunded"] if charge else 0,
            "currency": pi["currency"],
            "payment_method": pi["payment_method"],
            "latest_charge": pi["latest_charge"],
            "disputed": bool(charge and charge["disputed"]),
            "transfer_group": pi["transfer_group"],
            "description": pi["description"],
            "metadata": pi["metadata"],
            "created": rfc3339(pi["created"]),
        },
    )


# ---------------------------------------------------------- payment intents

_PI_CREATE_PARAMS = _names(
    """amount currency automatic_payment_methods confirm customer description metadata
    off_session payment_method receipt_email setup_future_usage shipping statement_descriptor
    statement_descriptor_suffix application_fee_amount capture_method confirmation_method
    confirmation_token error_on_requires_action expand mandate mandate_data on_behalf_of
    payment_method_configuration payment_method_data payment_method_options
    payment_method_types radar_options return_url transfer_data transfer_group use_stripe_sdk
    amount_details hooks payment_details excluded_payment_method_types"""
)
_PI_CONFIRM_PARAMS = _names(
    """payment_method return_url receipt_email setup_future_usage shipping off_session
    error_on_requires_action mandate mandate_data payment_method_data payment_method_options
    payment_method_types radar_options use_stripe_sdk capture_method confirmation_token expand
    amount_details payment_details hooks excluded_payment_method_types"""
)
_PI_UPDATE_PARAMS = _names(
    """amount currency customer description metadata payment_method receipt_email
    setup_future_usage shipping statement_descriptor statement_descriptor_suffix transfer_group
    payment_method_types payment_method_options payment_method_data application_fee_amount
    transfer_data capture_method expand payment_method_configuration amount_details
    payment_details hooks excluded_payment_method_types"""
)
_CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)
_CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")


def _capture_method(params: dict[str, Any]) -> str:
    value = _choice(params, "capture_method", ("automatic", "automatic_async", "manual"))
    if value == "manual":
        raise invalid_request(
            "The sandbox supports only automatic capture.", param="capture_method"
        )
    return value or "automatic_async"


def _currency(params: dict[str, Any]) -> str:
    currency = _str(params, "currency", required=True)
    assert currency is not None
    if not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise invalid_request(
            f"Invalid currency: {currency}.", param="currency", code="parameter_invalid_string"
        )
    return currency.lower()


def _get_payment_intent(call: StripeCall, intent: str) -> dict[str, Any]:
    pi = call.store.payment_intents.get(intent)
    if pi is None:
        raise resource_missing("payment_intent", intent, "intent")
    return pi


def _present_payment_intent(call: StripeCall, pi: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(pi)
    if "latest_charge" in _expand(call.params) and pi["latest_charge"]:
        body["latest_charge"] = copy.deepcopy(call.store.charges[pi["latest_charge"]])
    return body


def create_payment_intent(call: StripeCall) -> dict[str, Any]:
    params = call.params
    _check_known(params, _PI_CREATE_PARAMS)
    amount = _int(params, "amount", required=True)
    currency = _currency(params)
    capture_method = _capture_method(params)
    payment_method = _str(params, "payment_method")
    confirm = _bool(params, "confirm")
    if payment_method is not None:
        _card_outcome(payment_method)  # an unknown method is refused before anything exists
    if confirm and payment_method is None:
        raise unexpected_state(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "To confirm the PaymentIntent with a payment method, pass `payment_method`.",
            param="payment_method",
        )
    automatic = params.get("automatic_payment_methods")
    if isinstance(automatic, dict):
        automatic = {
            "enabled": automatic.get("enabled") == "true",
            **(
                {"allow_redirects": automatic["allow_redirects"]}
                if "allow_redirects" in automatic
                else {}
            ),
        }
    types = params.get("payment_method_types")
    if isinstance(types, str):
        types = [types]
    pi_id = new_id("pi")
    pi: dict[str, Any] = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": automatic or None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": capture_method,
        "client_secret": f"{pi_id}_secret_{new_id('s', 24)[2:]}",
        "confirmation_method": "automatic",
        "created": call.now(),
        "currency": currency,
        "customer": _str(params, "customer"),
        "description": _str(params, "description"),
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": _metadata(params),
        "next_action": None,
        "on_behalf_of": _str(params, "on_behalf_of"),
        "payment_method": payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": types or ["card"],
        "processing": None,
        "receipt_email": _str(params, "receipt_email"),
        "return_url": _str(params, "return_url"),
        "review": None,
        "setup_future_usage": None,
        "shipping": params.get("shipping"),
        "source": None,
        "statement_descriptor": _str(params, "statement_descriptor"),
        "statement_descriptor_suffix": _str(params, "statement_descriptor_suffix"),
        "status": "requires_confirmation" if payment_method else "requires_payment_method",
        "transfer_data": params.get("transfer_data"),
        "transfer_group": _str(params, "transfer_group"),
    }
    call.store.payment_intents[pi_id] = pi
    call.state.ledger.put("payment_intents", pi_id, {"idempotency_key": call.idempotency_key})
    _record_payment_intent(call, pi)
    if confirm:
        assert payment_method is not None
        _confirm(call, pi, payment_method)
    return _present_payment_intent(call, pi)


def retrieve_payment_intent(call: StripeCall, intent: str) -> dict[str, Any]:
    return _present_payment_intent(call, _get_payment_intent(call, intent))


def list_payment_intents(call: StripeCall) -> dict[str, Any]:
    customer = _str(call.params, "customer")
    expand_charge = "data.latest_charge" in _expand(call.params)

    def present(pi: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(pi)
        if expand_charge and pi["latest_charge"]:
            body["latest_charge"] = copy.deepcopy(call.store.charges[pi["latest_charge"]])
        return body

    return _list(
        call,
        call.store.payment_intents,
        url="/v1/payment_intents",
        label="payment_intent",
        where=lambda pi: customer is None or pi["customer"] == customer,
        present=present,
        filters=_names("customer customer_account"),
    )


def update_payment_intent(call: StripeCall, intent: str) -> dict[str, Any]:
    params = call.params
    _check_known(params, _PI_UPDATE_PARAMS)
    pi = _get_payment_intent(call, intent)
    if pi["status"] in ("succeeded", "canceled", "processing"):
        raise unexpected_state(
            f"This PaymentIntent's parameters cannot be updated because it has a status of "
            f"{pi['status']}."
        )
    if (amount := _int(params, "amount")) is not None:
        pi["amount"] = amount
    if params.get("currency"):
        pi["currency"] = _currency(params)
    if (payment_method := _str(params, "payment_method")) is not None:
        _card_outcome(payment_method)
        pi["payment_method"] = payment_method
        if pi["status"] == "requires_payment_method":
            pi["status"] = "requires_confirmation"
    for name in ("description", "transfer_group", "receipt_email", "statement_descriptor"):
        if name in params:
            pi[name] = _str(params, name)
    pi["metadata"] = _metadata(params, pi["metadata"])
    _capture_method(params)
    _record_payment_intent(call, pi)
    return _present_payment_intent(call, pi)


def confirm_payment_intent(call: StripeCall, intent: str) -> dict[str, Any]:
    params = call.params
    _check_known(params, _PI_CONFIRM_PARAMS)
    pi = _get_payment_intent(call, intent)
    if pi["status"] == "succeeded":
        raise unexpected_state(
            "You cannot confirm this PaymentIntent because it has already succeeded after "
            "being previously confirmed."
        )
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise unexpected_state(
            f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}."
        )
    payment_method = _str(params, "payment_method") or pi["payment_method"]
    if payment_method is None:
        raise unexpected_state(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "To confirm the PaymentIntent with a payment method, pass `payment_method`.",
            param="payment_method",
        )
    _card_outcome(payment_method)
    if (return_url := _str(params, "return_url")) is not None:
        pi["return_url"] = return_url
    _confirm(call, pi, payment_method)
    return _present_payment_intent(call, pi)


def cancel_payment_intent(call: StripeCall, intent: str) -> dict[str, Any]:
    params = call.params
    _check_known(params, frozenset({"cancellation_reason", "expand"}))
    pi = _get_payment_intent(call, intent)
    reason = _choice(params, "cancellation_reason", _CANCELLATION_REASONS)
    if pi["status"] not in _CANCELABLE:
        raise unexpected_state(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
            f"Only a PaymentIntent with one of the following statuses may be canceled: "
            f"{', '.join(_CANCELABLE)}."
        )
    pi.update(
        status="canceled", canceled_at=call.now(), cancellation_reason=reason, next_action=None
    )
    _record_payment_intent(call, pi)
    _emit(call, "payment_intent.canceled", pi)
    return _present_payment_intent(call, pi)


def _new_charge(call: StripeCall, pi: dict[str, Any], payment_method: str) -> dict[str, Any]:
    outcome = _card_outcome(payment_method)
    charge: dict[str, Any] = {
        "id": new_id("ch"),
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"],
        "amount_refunded": 0,
        "balance_transaction": new_id("txn"),
        "captured": True,
        "created": call.now(),
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "disputed": False,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": dict(pi["metadata"]),
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": pi["id"],
        "payment_method": payment_method,
        "payment_method_details": {
            "type": "card",
            "card": {"brand": outcome.brand, "last4": outcome.last4, "country": "US"},
        },
        "receipt_url": None,
        "refunded": False,
        "status": "succeeded",
        "transfer_group": pi["transfer_group"],
    }
    call.store.charges[charge["id"]] = charge
    return charge


def _confirm(call: StripeCall, pi: dict[str, Any], payment_method: str) -> None:
    outcome = _card_outcome(payment_method)
    pi["payment_method"] = payment_method
    if outcome.result == "authenticate":
        pi.update(
            status="requires_action", next_action=_next_action(call, pi), last_payment_error=None
        )
        _record_payment_intent(call, pi)
        _emit(call, "payment_intent.requires_action", pi)
    elif outcome.result == "succeed":
        _succeed(call, pi)
    else:
        _decline(call, pi, outcome)


def _next_action(call: StripeCall, pi: dict[str, Any]) -> dict[str, Any]:
    authenticate = (
        f"{call.state.settings.sandbox_base.rstrip('/')}"
        f"/_sandbox/stripe/payment_intents/{pi['id']}/authenticate"
    )
    if pi["return_url"]:
        return {
            "type": "redirect_to_url",
            "redirect_to_url": {"return_url": pi["return_url"], "url": authenticate},
        }
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {
            "type": "three_d_secure_redirect",
            "source": new_id("src"),
            "stripe_js": authenticate,
        },
    }


def _succeed(call: StripeCall, pi: dict[str, Any]) -> None:
    charge = _new_charge(call, pi, pi["payment_method"])
    pi.update(
        status="succeeded",
        amount_received=pi["amount"],
        latest_charge=charge["id"],
        last_payment_error=None,
        next_action=None,
    )
    _record_payment_intent(call, pi)
    _emit(call, "payment_intent.succeeded", pi)


def _decline(call: StripeCall, pi: dict[str, Any], outcome: CardOutcome) -> None:
    payment_method = pi["payment_method"]
    charge = _new_charge(call, pi, payment_method)
    charge.update(
        status="failed",
        paid=False,
        captured=False,
        amount_captured=0,
        failure_code=outcome.code,
        failure_message=outcome.message,
        outcome={
            "network_status": "declined_by_network",
            "reason": outcome.decline_code,
            "risk_level": "normal",
            "type": "issuer_declined",
            "seller_message": "The bank did not return any further details with this decline.",
        },
    )
    error: dict[str, Any] = {
        "type": "card_error",
        "code": outcome.code,
        "decline_code": outcome.decline_code,
        "message": outcome.message,
        "charge": charge["id"],
        "doc_url": f"{DOC_URL}#{(outcome.code or '').replace('_', '-')}",
        "payment_method": _payment_method_object(payment_method, outcome),
    }
    pi.update(
        status="requires_payment_method",
        payment_method=None,
        latest_charge=charge["id"],
        last_payment_error=error,
        next_action=None,
    )
    _record_payment_intent(call, pi)
    _emit(call, "payment_intent.payment_failed", pi)
    raise StripeError(
        402,
        {**error, "payment_intent": _present_payment_intent(call, pi)},
        replayable=True,
    )


# ------------------------------------------------------------------ charges


def retrieve_charge(call: StripeCall, charge_id: str) -> dict[str, Any]:
    charge = call.store.charges.get(charge_id)
    if charge is None:
        raise resource_missing("charge", charge_id, "charge")
    return charge


# ------------------------------------------------------------------ refunds

_REFUND_PARAMS = _names(
    """amount charge payment_intent reason metadata expand currency customer instructions_email
    origin refund_application_fee reverse_transfer"""
)


def create_refund(call: StripeCall) -> dict[str, Any]:
    params = call.params
    _check_known(params, _REFUND_PARAMS)
    intent_id = _str(params, "payment_intent")
    charge_id = _str(params, "charge")
    if intent_id is None and charge_id is None:
        raise invalid_request(
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
            code="parameter_missing",
        )
    if intent_id is not None:
        pi = _get_payment_intent(call, intent_id)
        charge = call.store.charges.get(pi["latest_charge"] or "")
        if pi["status"] != "succeeded" or charge is None or charge["status"] != "succeeded":
            raise invalid_request(
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                param="payment_intent",
                code="charge_not_refundable",
            )
    else:
        assert charge_id is not None
        found = call.store.charges.get(charge_id)
        if found is None:
            raise resource_missing("charge", charge_id, "charge")
        charge = found
    if charge["status"] != "succeeded":
        raise invalid_request(
            f"Charge {charge['id']} has not succeeded.",
            param="charge",
            code="charge_not_refundable",
        )
    if _charged_back(call, charge["id"]):
        raise invalid_request(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.",
            code="charge_disputed",
        )
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise invalid_request(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    amount = _int(params, "amount")
    if amount is None:
        amount = remaining
    if amount > remaining:
        raise invalid_request(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
            param="amount",
            code="amount_too_large",
        )
    reason = _choice(params, "reason", ("duplicate", "fraudulent", "requested_by_customer"))
    refund: dict[str, Any] = {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": new_id("txn"),
        "charge": charge["id"],
        "created": call.now(),
        "currency": charge["currency"],
        "destination_details": {"type": "card", "card": {"type": "refund"}},
        "metadata": _metadata(params),
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    call.store.refunds[refund["id"]] = refund
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    call.state.ledger.put(
        "refunds",
        refund["id"],
        {
            "status": refund["status"],
            "amount": amount,
            "currency": refund["currency"],
            "payment_intent": refund["payment_intent"],
            "charge": charge["id"],
            "reason": reason,
            "metadata": refund["metadata"],
            "idempotency_key": call.idempotency_key,
            "created": rfc3339(refund["created"]),
        },
    )
    pi_for_charge = call.store.payment_intents.get(charge["payment_intent"] or "")
    if pi_for_charge is not None:
        _record_payment_intent(call, pi_for_charge)
    return refund


def retrieve_refund(call: StripeCall, refund_id: str) -> dict[str, Any]:
    refund = call.store.refunds.get(refund_id)
    if refund is None:
        raise resource_missing("refund", refund_id, "refund")
    return refund


def list_refunds(call: StripeCall) -> dict[str, Any]:
    intent = _str(call.params, "payment_intent")
    charge = _str(call.params, "charge")
    return _list(
        call,
        call.store.refunds,
        url="/v1/refunds",
        label="refund",
        where=lambda r: (
            (intent is None or r["payment_intent"] == intent)
            and (charge is None or r["charge"] == charge)
        ),
        filters=_names("payment_intent charge"),
    )


def _charged_back(call: StripeCall, charge_id: str) -> bool:
    """A card chargeback (open or lost) took the money back: Stripe refuses a refund.

    Once the dispute is won the funds are reinstated and the charge can be
    refunded again (``is_charge_refundable`` is false for card disputes).
    """
    return any(
        d["charge"] == charge_id and d["status"] != "won" for d in call.store.disputes.values()
    )


# ------------------------------------------------------------------ connect

_ACCOUNT_PARAMS = _names(
    """type country email capabilities business_type business_profile company individual
    metadata settings tos_acceptance external_account controller default_currency documents
    groups expand account_token bank_account"""
)
# Any one of these active lets an account receive transfers.
_TRANSFER_CAPABILITIES = ("transfers", "crypto_transfers", "legacy_payments")


def _requested_capabilities(params: dict[str, Any]) -> list[str]:
    """``capabilities[transfers][requested]=true`` → ``["transfers"]``; none asked → both usual."""
    requested = params.get("capabilities")
    if requested is None:
        return ["card_payments", "transfers"]
    if not isinstance(requested, dict):
        raise invalid_request("Invalid hash", param="capabilities", code="parameter_invalid_hash")
    names = []
    for name, spec in requested.items():
        if not isinstance(spec, dict):
            raise invalid_request(
                "Invalid hash", param=f"capabilities[{name}]", code="parameter_invalid_hash"
            )
        _check_known(spec, frozenset({"requested"}))
        if _bool(spec, "requested"):
            names.append(name)
    return names


def _set_account_restricted(account: dict[str, Any], restricted: bool) -> None:
    """A restricted account (requirements past due) has every capability inactive."""
    status = "inactive" if restricted else "active"
    account["capabilities"] = {name: status for name in account["capabilities"]}
    account["charges_enabled"] = not restricted and "card_payments" in account["capabilities"]
    account["payouts_enabled"] = not restricted
    due = ["individual.verification.document"] if restricted else []
    account["requirements"].update(
        currently_due=list(due),
        past_due=list(due),
        disabled_reason="requirements.past_due" if restricted else None,
    )


def _account_restricted(account: dict[str, Any]) -> bool:
    return account["requirements"]["disabled_reason"] is not None


def _record_account(
    state: SandboxState, account: dict[str, Any], *, idempotency_key: str | None = None
) -> None:
    entry: dict[str, Any] = {
        "status": "restricted" if _account_restricted(account) else "active",
        "type": account["type"],
        "country": account["country"],
        "email": account["email"],
        "capabilities": account["capabilities"],
        "charges_enabled": account["charges_enabled"],
        "payouts_enabled": account["payouts_enabled"],
        "metadata": account["metadata"],
        "created": rfc3339(account["created"]),
    }
    if idempotency_key is not None:
        entry["idempotency_key"] = idempotency_key
    state.ledger.put("accounts", account["id"], entry)


def create_account(call: StripeCall) -> dict[str, Any]:
    params = call.params
    _check_known(params, _ACCOUNT_PARAMS)
    kind = _choice(params, "type", ("express", "custom", "standard")) or "express"
    country = (_str(params, "country") or "US").upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise invalid_request(
            f"Invalid country: {country}.", param="country", code="country_code_invalid"
        )
    account_id = new_id("acct", 16)
    account: dict[str, Any] = {
        "id": account_id,
        "object": "account",
        "business_profile": params.get("business_profile") or {},
        "business_type": _str(params, "business_type"),
        "capabilities": {},
        "charges_enabled": True,
        "controller": {"type": "application", "is_controller": True},
        "country": country,
        "created": call.now(),
        "default_currency": (_str(params, "default_currency") or "usd").lower(),
        "details_submitted": True,
        "email": _str(params, "email"),
        "external_accounts": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/accounts/{account_id}/external_accounts",
        },
        "metadata": _metadata(params),
        "payouts_enabled": True,
        "requirements": {
            "alternatives": [],
            "current_deadline": None,
            "currently_due": [],
            "disabled_reason": None,
            "errors": [],
            "eventually_due": [],
            "past_due": [],
            "pending_verification": [],
        },
        "settings": {"payouts": {"schedule": {"interval": "daily", "delay_days": 2}}},
        "tos_acceptance": {"date": call.now()},
        "type": kind,
    }
    account["capabilities"] = dict.fromkeys(_requested_capabilities(params), "active")
    _set_account_restricted(account, False)
    call.store.accounts[account_id] = account
    _record_account(call.state, account, idempotency_key=call.idempotency_key)
    return account


def _get_account(call: StripeCall, account_id: str) -> dict[str, Any]:
    account = call.store.accounts.get(account_id)
    if account is None:
        raise resource_missing("account", account_id, "account")
    return account


def retrieve_account(call: StripeCall, account_id: str) -> dict[str, Any]:
    return _get_account(call, account_id)


def list_accounts(call: StripeCall) -> dict[str, Any]:
    return _list(call, call.store.accounts, url="/v1/accounts", label="account")


def create_account_link(call: StripeCall) -> dict[str, Any]:
    params = call.params
    _check_known(
        params,
        _names("account type refresh_url return_url collect collection_options expand"),
    )
    account_id = _str(params, "account", required=True)
    assert account_id is not None
    _get_account(call, account_id)
    _str(params, "type", required=True)
    now = call.now()
    return {
        "object": "account_link",
        "created": now,
        "expires_at": now + 300,
        "url": f"{call.state.settings.sandbox_base.rstrip('/')}/_sandbox/stripe/onboarding/"
        f"{account_id}",
    }


# ---------------------------------------------------------------- transfers

_TRANSFER_PARAMS = _names(
    """amount currency destination description metadata source_transaction source_type
    transfer_group expand"""
)
# Transfers embed their first reversals, like Stripe's sublists.
_EMBEDDED_LIST_SIZE = 10


def _transfer_status(transfer: dict[str, Any]) -> str:
    if transfer["reversed"]:
        return "reversed"
    return "partially_reversed" if transfer["amount_reversed"] else "paid"


def _record_transfer(call: StripeCall, transfer: dict[str, Any], *, created: bool) -> None:
    reversals = [
        {
            "id": r["id"],
            "amount": r["amount"],
            "metadata": r["metadata"],
            "idempotency_key": r["idempotency_key"],
            "created": rfc3339(r["created"]),
        }
        for r in _reversals_of(call, transfer["id"])
    ]
    entry: dict[str, Any] = {
        "status": _transfer_status(transfer),
        "amount": transfer["amount"],
        "amount_reversed": transfer["amount_reversed"],
        "currency": transfer["currency"],
        "destination": transfer["destination"],
        "transfer_group": transfer["transfer_group"],
        "source_transaction": transfer["source_transaction"],
        "reversals": list(reversed(reversals)),  # oldest first, like every ledger list
        "metadata": transfer["metadata"],
        "created": rfc3339(transfer["created"]),
    }
    if created:
        entry["idempotency_key"] = call.idempotency_key
    call.state.ledger.put("transfers", transfer["id"], entry)


def _reversals_of(call: StripeCall, transfer_id: str) -> list[dict[str, Any]]:
    """The transfer's reversals, newest first (with the sandbox-only ``idempotency_key``)."""
    return [
        r for r in reversed(call.store.transfer_reversals.values()) if r["transfer"] == transfer_id
    ]


def _present_reversal(reversal: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in reversal.items() if k != "idempotency_key"}


def _present_transfer(call: StripeCall, transfer: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(transfer)
    reversals = _reversals_of(call, transfer["id"])
    body["reversals"] = {
        "object": "list",
        "data": [_present_reversal(r) for r in reversals[:_EMBEDDED_LIST_SIZE]],
        "has_more": len(reversals) > _EMBEDDED_LIST_SIZE,
        "total_count": len(reversals),
        "url": f"/v1/transfers/{transfer['id']}/reversals",
    }
    return body


def _check_destination(call: StripeCall, destination: str) -> None:
    # Any acct_ id is accepted (a merchant may be configured with one made outside
    # the sandbox); an account made here must be able to receive transfers.
    if not destination.startswith("acct_"):
        raise resource_missing("destination", destination, "destination")
    account = call.store.accounts.get(destination)
    if account is None:
        return
    if not any(account["capabilities"].get(c) == "active" for c in _TRANSFER_CAPABILITIES):
        raise invalid_request(
            "Your destination account needs to have at least one of the following "
            f"capabilities enabled: {', '.join(_TRANSFER_CAPABILITIES)}",
            param="destination",
            code="insufficient_capabilities_for_transfer",
        )


def _check_source_transaction(call: StripeCall, charge_id: str, amount: int, currency: str) -> None:
    """A transfer funded by a charge: a succeeded platform charge, same currency, enough left.

    What is left is the charge amount less the transfers already made from it
    (reversals do not give it back; the sandbox charges no Stripe fee).
    """
    charge = call.store.charges.get(charge_id)
    if charge is None:
        raise resource_missing("charge", charge_id, "source_transaction")
    if charge["status"] != "succeeded":
        raise invalid_request(
            f"The source_transaction {charge_id} has status {charge['status']}; only a "
            "succeeded charge can fund a transfer.",
            param="source_transaction",
        )
    if charge["currency"] != currency:
        raise invalid_request(
            f"The currency of source_transaction's balance transaction ({charge['currency']}) "
            f"must be the same as the transfer currency ({currency})",
            param="source_transaction",
        )
    transferred = sum(
        t["amount"] for t in call.store.transfers.values() if t["source_transaction"] == charge_id
    )
    available = charge["amount"] - transferred
    if amount > available:
        raise invalid_request(
            f"Insufficient funds in source_transaction {charge_id}: the transfer amount "
            f"({amount}) exceeds the amount still available from that charge ({available}).",
            param="amount",
            code="balance_insufficient",
        )


def create_transfer(call: StripeCall) -> dict[str, Any]:
    params = call.params
    _check_known(params, _TRANSFER_PARAMS)
    amount = _int(params, "amount", required=True)
    assert amount is not None
    currency = _currency(params)
    destination = _str(params, "destination", required=True)
    assert destination is not None
    _check_destination(call, destination)
    source_transaction = _str(params, "source_transaction")
    if source_transaction is not None:
        _check_source_transaction(call, source_transaction, amount, currency)
    transfer_id = new_id("tr")
    transfer: dict[str, Any] = {
        "id": transfer_id,
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "balance_transaction": new_id("txn"),
        "created": call.now(),
        "currency": currency,
        "description": _str(params, "description"),
        "destination": destination,
        "destination_payment": new_id("py"),
        "livemode": False,
        "metadata": _metadata(params),
        "reversed": False,
        "source_transaction": source_transaction,
        "source_type": "card",
        "transfer_group": _str(params, "transfer_group"),
    }
    call.store.transfers[transfer_id] = transfer
    _record_transfer(call, transfer, created=True)
    body = _present_transfer(call, transfer)
    _emit(call, "transfer.created", body)
    return body


def _get_transfer(call: StripeCall, transfer_id: str) -> dict[str, Any]:
    transfer = call.store.transfers.get(transfer_id)
    if transfer is None:
        raise resource_missing("transfer", transfer_id, "id")
    return transfer


def retrieve_transfer(call: StripeCall, transfer_id: str) -> dict[str, Any]:
    return _present_transfer(call, _get_transfer(call, transfer_id))


def list_transfers(call: StripeCall) -> dict[str, Any]:
    destination = _str(call.params, "destination")
    group = _str(call.params, "transfer_group")
    return _list(
        call,
        call.store.transfers,
        url="/v1/transfers",
        label="transfer",
        where=lambda t: (
            (destination is None or t["destination"] == destination)
            and (group is None or t["transfer_group"] == group)
        ),
        present=lambda t: _present_transfer(call, t),
        filters=_names("destination transfer_group"),
    )


def create_transfer_reversal(call: StripeCall, transfer_id: str) -> dict[str, Any]:
    params = call.params
    _check_known(params, _names("amount description metadata refund_application_fee expand"))
    transfer = _get_transfer(call, transfer_id)
    remaining = transfer["amount"] - transfer["amount_reversed"]
    amount = _int(params, "amount")
    if amount is None:
        amount = remaining
    if remaining <= 0 or amount > remaining:
        raise invalid_request(
            f"You have attempted to reverse {amount} of transfer {transfer_id}, "
            f"but only {remaining} remains to be reversed.",
            param="amount",
            code="amount_too_large",
        )
    reversal: dict[str, Any] = {
        "id": new_id("trr"),
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": new_id("txn"),
        "created": call.now(),
        "currency": transfer["currency"],
        "destination_payment_refund": new_id("pyr"),
        "metadata": _metadata(params),
        "source_refund": None,
        "transfer": transfer_id,
        "idempotency_key": call.idempotency_key,  # sandbox-only, never presented
    }
    call.store.transfer_reversals[reversal["id"]] = reversal
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    _record_transfer(call, transfer, created=False)
    _emit(call, "transfer.reversed", _present_transfer(call, transfer))
    return _present_reversal(reversal)


def _get_reversal(call: StripeCall, transfer_id: str, reversal_id: str) -> dict[str, Any]:
    _get_transfer(call, transfer_id)
    reversal = call.store.transfer_reversals.get(reversal_id)
    if reversal is None or reversal["transfer"] != transfer_id:
        raise resource_missing("transfer_reversal", reversal_id, "id")
    return reversal


def retrieve_transfer_reversal(
    call: StripeCall, transfer_id: str, reversal_id: str
) -> dict[str, Any]:
    return _present_reversal(_get_reversal(call, transfer_id, reversal_id))


def list_transfer_reversals(call: StripeCall, transfer_id: str) -> dict[str, Any]:
    _get_transfer(call, transfer_id)
    return _list(
        call,
        call.store.transfer_reversals,
        url=f"/v1/transfers/{transfer_id}/reversals",
        label="transfer_reversal",
        where=lambda r: r["transfer"] == transfer_id,
        present=_present_reversal,
    )


# ----------------------------------------------------------------- disputes

_DISPUTE_OPEN = ("warning_needs_response", "needs_response", "warning_under_review", "under_review")
DisputeReason = Literal[
    "bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated",
    "debit_not_authorized", "duplicate", "fraudulent", "general", "incorrect_account_details",
    "insufficient_funds", "noncompliant", "product_not_received", "product_unacceptable",
    "subscription_canceled", "unrecognized",
]  # fmt: skip
# Visa reason codes the card network would send with each reason.
_NETWORK_REASON_CODES = {
    "fraudulent": "10.4",
    "duplicate": "12.6.1",
    "product_not_received": "13.1",
    "product_unacceptable": "13.3",
    "credit_not_processed": "13.6",
    "subscription_canceled": "13.2",
}
_EVIDENCE_FIELDS = _names(
    """access_activity_log billing_address cancellation_policy cancellation_policy_disclosure
    cancellation_rebuttal customer_communication customer_email_address customer_name
    customer_purchase_ip customer_signature duplicate_charge_documentation
    duplicate_charge_explanation duplicate_charge_id product_description receipt refund_policy
    refund_policy_disclosure refund_refusal_explanation service_date service_documentation
    shipping_address shipping_carrier shipping_date shipping_documentation
    shipping_tracking_number uncategorized_file uncategorized_text"""
)


def _get_dispute(call: StripeCall, dispute_id: str) -> dict[str, Any]:
    dispute = call.store.disputes.get(dispute_id)
    if dispute is None:
        raise resource_missing("dispute", dispute_id, "dispute")
    return dispute


def retrieve_dispute(call: StripeCall, dispute_id: str) -> dict[str, Any]:
    return _get_dispute(call, dispute_id)


def list_disputes(call: StripeCall) -> dict[str, Any]:
    charge = _str(call.params, "charge")
    intent = _str(call.params, "payment_intent")
    return _list(
        call,
        call.store.disputes,
        url="/v1/disputes",
        label="dispute",
        where=lambda d: (
            (charge is None or d["charge"] == charge)
            and (intent is None or d["payment_intent"] == intent)
        ),
        filters=_names("charge payment_intent"),
    )


def update_dispute(call: StripeCall, dispute_id: str) -> dict[str, Any]:
    """Add evidence and metadata; ``submit=true`` sends the evidence (→ ``under_review``)."""
    params = call.params
    _check_known(params, _names("evidence metadata submit expand intended_submission_method"))
    dispute = _get_dispute(call, dispute_id)
    if dispute["status"] not in ("needs_response", "warning_needs_response"):
        raise invalid_request(
            f"This dispute is already {dispute['status'].replace('_', ' ')} and cannot be updated.",
            param="evidence" if "evidence" in params else None,
        )
    evidence = params.get("evidence")
    if evidence is not None:
        if not isinstance(evidence, dict):
            raise invalid_request("Invalid hash", param="evidence", code="parameter_invalid_hash")
        dispute["evidence"].update(evidence)
        dispute["evidence_details"]["has_evidence"] = True
    dispute["metadata"] = _metadata(params, dispute["metadata"])
    if _bool(params, "submit"):
        dispute["status"] = dispute["status"].replace("needs_response", "under_review")
        dispute["evidence_details"]["submission_count"] += 1
    _record_dispute(call.state, dispute)
    _emit(call, "charge.dispute.updated", dispute)
    return dispute


def close_dispute(call: StripeCall, dispute_id: str) -> dict[str, Any]:
    """The platform accepts the dispute: it is lost."""
    _check_known(call.params, _names("expand"))
    dispute = _get_dispute(call, dispute_id)
    if dispute["status"] not in ("needs_response", "warning_needs_response"):
        raise invalid_request(
            f"This dispute has status {dispute['status']} and can no longer be closed."
        )
    _finish_dispute(call.state, dispute, "lost", request_id=call.request_id)
    return dispute


def _dispute_balance_transaction(
    dispute: dict[str, Any], amount: int, category: str, created: int
) -> dict[str, Any]:
    return {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created,
        "created": created,
        "currency": dispute["currency"],
        "description": f"Chargeback {'withdrawal' if amount < 0 else 'reversal'} for "
        f"{dispute['charge']}",
        "fee": 0,
        "fee_details": [],
        "net": amount,
        "reporting_category": category,
        "source": dispute["id"],
        "status": "available",
        "type": "adjustment",
    }


def _record_dispute(
    state: SandboxState, dispute: dict[str, Any], *, closed: int | None = None
) -> None:
    withdrawn = -sum(b["amount"] for b in dispute["balance_transactions"] if b["amount"] < 0)
    reinstated = sum(b["amount"] for b in dispute["balance_transactions"] if b["amount"] > 0)
    charge = state.store(StripeStore).charges.get(dispute["charge"]) or {}
    state.ledger.put(
        "disputes",
        dispute["id"],
        {
            "status": dispute["status"],
            "amount": dispute["amount"],
            "currency": dispute["currency"],
            "charge": dispute["charge"],
            "payment_intent": dispute["payment_intent"],
            "reason": dispute["reason"],
            "metadata": charge.get("metadata", {}),
            "idempotency_key": None,
            "funds_withdrawn": withdrawn,
            "funds_reinstated": reinstated,
            # What the dispute costs the platform: withdrawn while open, kept when lost,
            # given back when won.
            "platform_debit": withdrawn - reinstated,
            "created": rfc3339(dispute["created"]),
            **({"closed": rfc3339(closed)} if closed is not None else {}),
        },
    )


def _finish_dispute(
    state: SandboxState,
    dispute: dict[str, Any],
    outcome: Literal["won", "lost"],
    *,
    request_id: str | None = None,
) -> None:
    now = int(time.time())
    dispute["status"] = outcome
    if outcome == "won":
        dispute["balance_transactions"].append(
            _dispute_balance_transaction(dispute, dispute["amount"], "dispute_reversal", now)
        )
    _record_dispute(state, dispute, closed=now)
    emit_event(state, "charge.dispute.closed", dispute, request_id=request_id)


# ------------------------------------------------------------------- events


def retrieve_event(call: StripeCall, event_id: str) -> dict[str, Any]:
    event = call.store.events.get(event_id)
    if event is None:
        raise resource_missing("event", event_id, "id")
    return event


def list_events(call: StripeCall) -> dict[str, Any]:
    """``type`` takes Stripe's ``*`` wildcard (``charge.dispute.*``); ``types[]`` any of several."""
    one = _str(call.params, "type")
    several = call.params.get("types")
    patterns = [one] if one else ([several] if isinstance(several, str) else list(several or []))
    matchers = [re.compile(re.escape(p).replace(r"\*", ".*") + "$") for p in patterns]
    return _list(
        call,
        call.store.events,
        url="/v1/events",
        label="event",
        where=lambda e: not matchers or any(m.match(e["type"]) for m in matchers),
        filters=_names("type types delivery_success"),
    )


# ------------------------------------------------------- request execution


def _api_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    return None


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
    return Response(
        json.dumps(body).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def execute(request: Request, operation: Operation) -> Response:
    """Authenticate, decode params, honour the Idempotency-Key, run ``operation``."""
    request_id = new_id("req", 14)
    headers = {"Request-Id": request_id, "Stripe-Version": DEFAULT_API_VERSION}
    api_key = _api_key(request)
    if api_key is None:
        return _json(
            401,
            {
                "error": {
                    "type": "invalid_request_error",
                    "message": "You did not provide an API key. You need to provide your API "
                    "key in the Authorization header, using Bearer auth "
                    "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                }
            },
            headers,
        )
    state = get_state(request)
    store = state.store(StripeStore)
    if request.method == "POST":
        raw = (await request.body()).decode("utf-8", errors="replace")
        params = decode_params(parse_qsl(raw, keep_blank_values=True))
        idempotency_key = request.headers.get("idempotency-key") or None
    else:
        params = decode_params(request.query_params.multi_items())
        idempotency_key = None

    path = request.url.path
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
        saved = store.idempotency.get((api_key, idempotency_key))
        if saved is not None:
            if (saved.method, saved.path, saved.params) != (request.method, path, params):
                return _json(
                    400,
                    {
                        "error": {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the "
                            "same parameters they were first used with. Try using a key other "
                            f"than '{idempotency_key}' if you meant to execute a different "
                            "request.",
                        }
                    },
                    headers,
                )
            return Response(
                saved.body,
                status_code=saved.status,
                media_type="application/json",
                headers={
                    **headers,
                    "Idempotent-Replayed": "true",
                    "Original-Request": saved.request_id,
                },
            )

    call = StripeCall(
        state=state,
        store=store,
        params=params,
        idempotency_key=idempotency_key,
        request_id=request_id,
        api_version=request.headers.get("stripe-version") or DEFAULT_API_VERSION,
    )
    try:
        body = operation(call)
        status, save = 200, True
    except StripeError as exc:
        body = {"error": exc.error}
        status, save = exc.status, exc.replayable
    encoded = json.dumps(body).encode()
    if idempotency_key is not None and save:
        store.idempotency[(api_key, idempotency_key)] = IdempotentResult(
            method=request.method,
            path=path,
            params=params,
            status=status,
            body=encoded,
            request_id=request_id,
        )
    return Response(encoded, status_code=status, media_type="application/json", headers=headers)


def _route(method: str, path: str, operation: Callable[..., dict[str, Any]]) -> None:
    """Register ``operation(call, **path_params)`` under ``/stripe{path}``."""

    async def endpoint(request: Request) -> Response:
        return await execute(request, partial(operation, **request.path_params))

    endpoint.__name__ = operation.__name__
    router.add_api_route(path, endpoint, methods=[method], name=f"stripe_{operation.__name__}")


_route("POST", "/v1/payment_intents", create_payment_intent)
_route("GET", "/v1/payment_intents", list_payment_intents)
_route("GET", "/v1/payment_intents/{intent}", retrieve_payment_intent)
_route("POST", "/v1/payment_intents/{intent}", update_payment_intent)
_route("POST", "/v1/payment_intents/{intent}/confirm", confirm_payment_intent)
_route("POST", "/v1/payment_intents/{intent}/cancel", cancel_payment_intent)
_route("GET", "/v1/charges/{charge_id}", retrieve_charge)
_route("POST", "/v1/refunds", create_refund)
_route("GET", "/v1/refunds", list_refunds)
_route("GET", "/v1/refunds/{refund_id}", retrieve_refund)
_route("POST", "/v1/accounts", create_account)
_route("GET", "/v1/accounts", list_accounts)
_route("GET", "/v1/accounts/{account_id}", retrieve_account)
_route("POST", "/v1/account_links", create_account_link)
_route("POST", "/v1/transfers", create_transfer)
_route("GET", "/v1/transfers", list_transfers)
_route("GET", "/v1/transfers/{transfer_id}", retrieve_transfer)
_route("POST", "/v1/transfers/{transfer_id}/reversals", create_transfer_reversal)
_route("GET", "/v1/transfers/{transfer_id}/reversals", list_transfer_reversals)
_route("GET", "/v1/transfers/{transfer_id}/reversals/{reversal_id}", retrieve_transfer_reversal)
_route("GET", "/v1/disputes", list_disputes)
_route("GET", "/v1/disputes/{dispute_id}", retrieve_dispute)
_route("POST", "/v1/disputes/{dispute_id}", update_dispute)
_route("POST", "/v1/disputes/{dispute_id}/close", close_dispute)
_route("GET", "/v1/events", list_events)
_route("GET", "/v1/events/{event_id}", retrieve_event)


@router.api_route("/{path:path}", methods=["GET", "POST", "DELETE"], include_in_schema=False)
async def unknown_stripe_path(request: Request, path: str) -> Response:
    return _json(
        404,
        {
            "error": {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({request.method}: /{path}). "
                "The provider sandbox implements only part of the Stripe API.",
            }
        },
        {"Request-Id": new_id("req", 14)},
    )


# ---------------------------------------------------------- control routes


class AuthenticateIn(BaseModel):
    outcome: Literal["succeed", "fail"] = "succeed"


class DisputeIn(BaseModel):
    reason: DisputeReason = "fraudulent"
    amount: int | None = Field(default=None, ge=1)


def _control_call(state: SandboxState) -> StripeCall:
    return StripeCall(
        state=state,
        store=state.store(StripeStore),
        params={},
        idempotency_key=None,
        request_id=new_id("req", 14),
        api_version=DEFAULT_API_VERSION,
    )


def _control_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


@control_router.post("/payment_intents/{intent}/authenticate", response_model=None)
async def authenticate_payment_intent(
    intent: str, state: StateDep, body: AuthenticateIn | None = None
) -> dict[str, Any] | JSONResponse:
    """Complete (or, with ``{"outcome": "fail"}``, fail) the customer's authentication."""
    call = _control_call(state)
    pi = call.store.payment_intents.get(intent)
    if pi is None:
        return _control_error(404, f"No such payment_intent: '{intent}'")
    if pi["status"] != "requires_action":
        return _control_error(
            409, f"PaymentIntent {intent} has status {pi['status']}, not requires_action."
        )
    if body is None or body.outcome == "succeed":
        _succeed(call, pi)
    else:
        error = {
            "type": "invalid_request_error",
            "code": "payment_intent_authentication_failure",
            "message": "The provided PaymentMethod has failed authentication. You can provide "
            "payment_method_data or a new PaymentMethod to attempt to fulfill this "
            "PaymentIntent again.",
            "doc_url": f"{DOC_URL}#payment-intent-authentication-failure",
        }
        pi.update(
            status="requires_payment_method",
            payment_method=None,
            next_action=None,
            last_payment_error=error,
        )
        _record_payment_intent(call, pi)
        _emit(call, "payment_intent.payment_failed", pi)
    return _present_payment_intent(call, pi)


@control_router.post("/charges/{charge_id}/dispute", status_code=201, response_model=None)
async def open_dispute(
    charge_id: str, state: StateDep, body: DisputeIn | None = None
) -> dict[str, Any] | JSONResponse:
    """Open a dispute on a charge (a ``pi_`` id means its latest charge).

    Like a card chargeback: status ``needs_response``, the amount withdrawn from
    the platform at once; ``charge.dispute.created`` is delivered. Answers the
    dispute (``dispute_id`` is its ``id``).
    """
    call = _control_call(state)
    if charge_id.startswith("pi_"):
        pi = call.store.payment_intents.get(charge_id)
        charge_id = (pi or {}).get("latest_charge") or charge_id
    charge = call.store.charges.get(charge_id)
    if charge is None or charge["status"] != "succeeded":
        return _control_error(404, f"No succeeded charge '{charge_id}'.")
    if charge["disputed"]:
        return _control_error(409, f"Charge {charge_id} is already disputed.")
    request = body or DisputeIn()
    amount = request.amount or charge["amount"]
    if amount > charge["amount"]:
        return _control_error(422, f"A dispute cannot exceed the charge ({charge['amount']}).")
    now = call.now()
    card = charge["payment_method_details"]["card"]
    dispute: dict[str, Any] = {
        "id": new_id("du"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge_id,
        "created": now,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": dict.fromkeys(sorted(_EVIDENCE_FIELDS)),
        "evidence_details": {
            "due_by": now + 7 * 86_400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "network_reason_code": _NETWORK_REASON_CODES.get(request.reason, "13.1"),
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {
            "type": "card",
            "card": {
                "brand": card["brand"],
                "case_type": "chargeback",
                "network_reason_code": _NETWORK_REASON_CODES.get(request.reason, "13.1"),
            },
        },
        "reason": request.reason,
        "status": "needs_response",
    }
    dispute["balance_transactions"].append(
        _dispute_balance_transaction(dispute, -amount, "dispute", now)
    )
    call.store.disputes[dispute["id"]] = dispute
    charge["disputed"] = True
    _record_dispute(state, dispute)
    pi_for_charge = call.store.payment_intents.get(charge["payment_intent"] or "")
    if pi_for_charge is not None:
        _record_payment_intent(call, pi_for_charge)
    emit_event(state, "charge.dispute.created", dispute)
    return {**copy.deepcopy(dispute), "dispute_id": dispute["id"]}


class DisputeCloseIn(BaseModel):
    status: Literal["won", "lost"]


@control_router.post("/disputes/{dispute_id}/close", response_model=None)
async def close_dispute_control(
    dispute_id: str, body: DisputeCloseIn, state: StateDep
) -> dict[str, Any] | JSONResponse:
    """The card network decides: ``won`` gives the funds back to the platform, ``lost``
    keeps them withdrawn. Delivers ``charge.dispute.closed``; closing twice answers 409."""
    dispute = state.store(StripeStore).disputes.get(dispute_id)
    if dispute is None:
        return _control_error(404, f"No such dispute: '{dispute_id}'")
    if dispute["status"] not in _DISPUTE_OPEN:
        return _control_error(409, f"Dispute {dispute_id} is already closed ({dispute['status']}).")
    _finish_dispute(state, dispute, body.status)
    return copy.deepcopy(dispute)


class RestrictIn(BaseModel):
    restricted: bool = True


@control_router.post("/accounts/{account_id}/restrict", response_model=None)
async def restrict_account(
    account_id: str, state: StateDep, body: RestrictIn | None = None
) -> dict[str, Any] | JSONResponse:
    """Restrict a connected account (requirements past due: no charges, payouts or
    transfers to it) or, with ``{"restricted": false}``, lift the restriction.
    Answers the account."""
    account = state.store(StripeStore).accounts.get(account_id)
    if account is None:
        return _control_error(404, f"No such account: '{account_id}'")
    _set_account_restricted(account, (body or RestrictIn()).restricted)
    _record_account(state, account)
    return copy.deepcopy(account)
