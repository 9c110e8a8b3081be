"""Notifications: customer emails and signed merchant webhooks.

Both are non-critical: the workflow never undoes an order because a
notification failed. Both are idempotent: the email carries an idempotency key
built from the order and the kind of message, the webhook a stable event id
the merchant dedupes on.
"""

from __future__ import annotations

import json
import logging

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.models import Merchant, Order, OrderEvent
from db.orders import get_order_public
from fulfil import errors
from fulfil.codec import KeyRing
from fulfil.models import CustomerEmail, MerchantWebhook
from fulfil.signatures import sign_merchant_webhook

log = logging.getLogger(__name__)

SUBJECTS = {
    "confirmed": "Your order {id} is confirmed",
    "failed": "We could not complete your order {id}",
    "cancelled": "Your order {id} was cancelled",
    "shipped": "Your order {id} is on its way",
    "delivered": "Your order {id} was delivered",
}

REASONS = {
    "payment_declined": "your card was declined, so nothing was charged",
    "out_of_stock": "an item sold out before we could reserve it, so nothing was charged",
    "payment_timeout": "the payment was not authenticated in time, so nothing was charged",
    "payment_rejected": "the payment could not be processed, so nothing was charged",
    "fulfilment_error": "of a problem on our side; any payment has been refunded",
}


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
    ) -> None:
        self._sessionmaker = sessionmaker
        self._http = http
        self._email_api_base = email_api_base
        self._email_from = email_from
        self._keyring = keyring

    @activity.defn
    async def send_customer_email(self, req: CustomerEmail) -> None:
        async with self._sessionmaker() as session:
            order = await session.get(Order, req.order_id)
            if order is None:
                raise ApplicationError(
                    "order not found", type=errors.ORDER_NOT_FOUND, non_retryable=True
                )
            to, name = order.customer_email, order.customer_name
            lines = [f"Hello {name},", ""]
            if req.kind == "failed":
                reason = REASONS.get(order.failure_reason or "", "of an unexpected problem")
                lines.append(f"We could not complete order {order.id} because {reason}.")
            elif req.kind == "cancelled":
                lines.append(f"Order {order.id} was cancelled. {req.detail}".strip())
            else:
                lines.append(f"Order {order.id}: {req.kind}. {req.detail}".strip())
            lines += ["", f"Total: {_money(order.total, order.currency)}"]
        if self._email_api_base is None:
            log.warning("no email provider configured", extra={"order_id": req.order_id})
            return
        response = await self._http.post(
            f"{self._email_api_base}/send",
            json={
                "from": self._email_from,
                "to": to,
                "subject": SUBJECTS.get(req.kind, "Order {id}").format(id=req.order_id),
                "text": "\n".join(lines),
                "tags": {"order_id": req.order_id, "kind": req.kind},
            },
            headers={"Idempotency-Key": f"order:{req.order_id}:email:{req.kind}"},
        )
        response.raise_for_status()
        log.info("customer emailed", extra={"order_id": req.order_id, "kind": req.kind})

    @activity.defn
    async def deliver_merchant_webhook(self, req: MerchantWebhook) -> None:
        """POST ``order.<status>`` to the merchant, signed; retried by Temporal until a 2xx."""
        async with self._sessionmaker() as session:
            order = await session.get(Order, req.order_id)
            event = await session.get(OrderEvent, req.event_id)
            if order is None or event is None:
                raise ApplicationError(
                    "order event not found", type=errors.ORDER_NOT_FOUND, non_retryable=True
                )
            merchant = await session.scalar(
                select(Merchant).where(Merchant.id == order.merchant_id)
            )
            if merchant is None or not merchant.webhook_url:
                return
            public = await get_order_public(session, order.id, merchant.id)
        body = json.dumps(
            {
                "id": f"evt_{order.id}_{event.id}",
                "type": f"order.{event.status}",
                "created": event.at.isoformat().replace("+00:00", "Z"),
                "data": public.model_dump(mode="json") if public else None,
            },
            separators=(",", ":"),
        ).encode()
        secret = self._keyring.open_text(merchant.webhook_secret_sealed)
        response = await self._http.post(
            merchant.webhook_url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Fulfil-Signature": sign_merchant_webhook(secret, body),
            },
        )
        if not response.is_success:
            raise RuntimeError(f"merchant endpoint answered {response.status_code}")
        log.info(
            "merchant webhook delivered",
            extra={"order_id": order.id, "event_id": event.id, "type": f"order.{event.status}"},
        )
