"""Notifications: customer emails and signed merchant webhooks, on a task queue of their own.

Both are non-critical: the workflow never undoes an order because a
notification failed, and the worker runs them on ``<task queue>-notify`` with
a concurrency cap, so a dead merchant endpoint never takes a slot from a
payment or a label. Both are idempotent: the email carries an idempotency key
built from the order and the kind of message, the webhook a stable event id
the merchant dedupes on.

Merchant webhooks are checked against SSRF at every delivery
(``fulfil.outbound``) and go to the address that was checked. After
``WEBHOOK_BREAKER_FAILURES`` failures in a row the endpoint is parked for
``WEBHOOK_BREAKER_COOLDOWN_SECONDS``: its deliveries wait (retried after the
cool-down, calling nothing), the merchant and ops see it (``webhook_endpoint``),
and one success or a re-saved URL closes the breaker.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from db import merchants, orders
from fulfil import errors
from fulfil.codec import KeyRing
from fulfil.enums import CustomerEmailKind, FailureReason
from fulfil.ids import email_idempotency_key, merchant_event_id
from fulfil.messages.orders import CustomerEmail, MerchantWebhook
from fulfil.outbound import Destination, UrlRefused, check_destination
from fulfil.signatures import sign_merchant_webhook

log = logging.getLogger(__name__)

WEBHOOK_FAILED = "MerchantWebhookFailed"
WEBHOOK_PARKED = "MerchantWebhookParked"


@dataclass(frozen=True)
class WebhookPolicy:
    """Where merchant webhooks may go, and when a failing endpoint is parked."""

    allowlist: list[str]
    require_https: bool
    breaker_failures: int
    breaker_cooldown: timedelta


SUBJECTS: dict[CustomerEmailKind, str] = {
    CustomerEmailKind.CONFIRMED: "Your order {id} is confirmed",
    CustomerEmailKind.FAILED: "We could not complete your order {id}",
    CustomerEmailKind.CANCELLED: "Your order {id} was cancelled",
    CustomerEmailKind.SHIPPED: "Your order {id} is on its way",
    CustomerEmailKind.DELIVERED: "Your order {id} was delivered",
    CustomerEmailKind.REFUNDED: "Your order {id} was refunded",
}

# Every failure reason has its sentence (a unit test holds the table complete).
REASONS: dict[FailureReason, str] = {
    FailureReason.PAYMENT_DECLINED: "your card was declined, so nothing was charged",
    FailureReason.OUT_OF_STOCK: (
        "an item sold out before we could reserve it, so nothing was charged"
    ),
    FailureReason.PAYMENT_TIMEOUT: (
        "the payment was not authenticated in time, so nothing was charged"
    ),
    FailureReason.PAYMENT_REJECTED: "the payment could not be processed, so nothing was charged",
    FailureReason.SHIPPING_UNAVAILABLE: (
        "we cannot ship it to your address with the carriers we use; any payment has been refunded"
    ),
    FailureReason.FULFILMENT_ERROR: "of a problem on our side; any payment has been refunded",
}


def failure_sentence(reason: str | None) -> str:
    try:
        return REASONS[FailureReason(reason or "")]
    except ValueError:
        return "of an unexpected problem"


def _money(amount: int | None, currency: str) -> str:
    return f"{(amount or 0) / 100:.2f} {currency}"


class NotifyActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        *,
        email_api_base: str | None,
        email_from: str,
        keyring: KeyRing,
        webhooks: WebhookPolicy,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._http = http
        self._email_api_base = email_api_base
        self._email_from = email_from
        self._keyring = keyring
        self._webhooks = webhooks

    @activity.defn
    async def send_customer_email(self, req: CustomerEmail) -> None:
        async with self._sessionmaker() as session:
            order = await orders.get_order(session, req.order_id, None)
        if order is None:
            raise ApplicationError(
                "order not found", type=errors.ORDER_NOT_FOUND, non_retryable=True
            )
        lines = [f"Hello {order.customer_name},", ""]
        if req.kind == CustomerEmailKind.FAILED:
            reason = failure_sentence(order.failure_reason)
            lines.append(f"We could not complete order {order.id} because {reason}.")
        elif req.kind == CustomerEmailKind.CANCELLED:
            lines.append(f"Order {order.id} was cancelled. {req.detail}".strip())
        else:
            lines.append(f"Order {order.id}: {req.kind.value}. {req.detail}".strip())
        lines += ["", f"Total: {_money(order.total, order.currency)}"]
        if self._email_api_base is None:
            log.warning("no email provider configured", extra={"order_id": req.order_id})
            return
        response = await self._http.post(
            f"{self._email_api_base}/send",
            json={
                "from": self._email_from,
                "to": order.customer_email,
                "subject": SUBJECTS[req.kind].format(id=req.order_id),
                "text": "\n".join(lines),
                "tags": {"order_id": req.order_id, "kind": req.kind.value},
            },
            headers={"Idempotency-Key": email_idempotency_key(req.order_id, req.kind.value)},
        )
        response.raise_for_status()
        log.info("customer emailed", extra={"order_id": req.order_id, "kind": req.kind.value})

    @activity.defn
    async def deliver_merchant_webhook(self, req: MerchantWebhook) -> None:
        """POST ``order.<status>`` to the merchant, signed; retried by Temporal until a 2xx.

        The URL is checked again here, against the address actually connected to;
        an endpoint that keeps failing is parked (its deliveries wait, calling nothing)."""
        async with self._sessionmaker() as session:
            order = await orders.get_order(session, req.order_id, None)
            event = await orders.get_event(session, req.event_id)
            if order is None or event is None:
                raise ApplicationError(
                    "order event not found", type=errors.ORDER_NOT_FOUND, non_retryable=True
                )
            merchant = await merchants.get_merchant(session, order.merchant_id)
            if merchant is None or not merchant.webhook_url:
                return
            public = await orders.get_order_public(session, order.id, merchant.id)
        now = datetime.now(UTC)
        if merchant.webhook_parked_until is not None and merchant.webhook_parked_until > now:
            raise parked(merchant.webhook_parked_until - now)
        body = json.dumps(
            {
                "id": merchant_event_id(order.id, event.id),
                "type": f"order.{event.status}",
                "created": event.at.isoformat().replace("+00:00", "Z"),
                "data": public.model_dump(mode="json") if public else None,
            },
            separators=(",", ":"),
        ).encode()
        secret = self._keyring.open_text(merchant.webhook_secret_sealed)
        headers = {
            "Content-Type": "application/json",
            "Fulfil-Signature": sign_merchant_webhook(secret, body),
        }
        try:
            destination = await check_destination(
                merchant.webhook_url,
                allowlist=self._webhooks.allowlist,
                require_https=self._webhooks.require_https,
            )
            status = await post_pinned(self._http, destination, body, headers)
            error = None if 200 <= status < 300 else f"the endpoint answered {status}"
        except UrlRefused as refused:
            error = f"the webhook URL is refused: {refused}"
        except httpx.HTTPError as failed:
            error = f"the endpoint did not answer: {type(failed).__name__}"
        async with self._sessionmaker.begin() as session:
            if error is None:
                await merchants.webhook_delivered(session, merchant.id)
            else:
                parked_until = await merchants.webhook_failed(
                    session,
                    merchant.id,
                    error,
                    threshold=self._webhooks.breaker_failures,
                    cooldown=self._webhooks.breaker_cooldown,
                )
        if error is not None:
            if parked_until is not None and parked_until > now:
                log.warning(
                    "merchant webhook endpoint parked",
                    extra={"merchant_id": merchant.id, "order_id": order.id, "error": error},
                )
                raise parked(parked_until - now)
            raise ApplicationError(error, type=WEBHOOK_FAILED)
        log.info(
            "merchant webhook delivered",
            extra={"order_id": order.id, "event_id": event.id, "type": f"order.{event.status}"},
        )


def parked(wait: timedelta) -> ApplicationError:
    """Retried after the cool-down, quietly: a parked endpoint is a state, not an incident."""
    return ApplicationError(
        f"the merchant's webhook endpoint is parked for {int(wait.total_seconds())} s",
        type=WEBHOOK_PARKED,
        next_retry_delay=max(wait, timedelta(seconds=1)),
        category=ApplicationErrorCategory.BENIGN,
    )


async def post_pinned(
    http: httpx.AsyncClient, destination: Destination, body: bytes, headers: dict[str, str]
) -> int:
    """POST to the checked address itself (no second DNS lookup), no redirects followed,
    the answer's body never read. Returns the status."""
    url = destination.url
    extensions: dict[str, Any] = {}
    if not destination.allowlisted and destination.addresses:
        address = destination.addresses[0]
        parts = urlsplit(destination.url)
        host = f"[{address}]" if ":" in address else address
        url = urlunsplit(parts._replace(netloc=f"{host}:{destination.port}"))
        headers = {**headers, "Host": parts.netloc.rsplit("@", 1)[-1]}
        extensions["sni_hostname"] = destination.host
    async with http.stream(
        "POST", url, content=body, headers=headers, extensions=extensions, follow_redirects=False
    ) as response:
        return response.status_code
