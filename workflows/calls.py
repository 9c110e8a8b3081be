"""Activity calls every workflow makes the same way: a PostgreSQL activity with the database
policy, and the two notifications of an order's status change (the customer's email and the
merchant's webhook) on the notify queue. Deterministic; runs nothing at import."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from fulfil.enums import CustomerEmailKind
    from fulfil.messages.orders import CustomerEmail, MerchantWebhook
    from fulfil.settings import notify_task_queue
    from workflows import policies


async def db(activity: Callable[..., Awaitable[Any]], arg: Any, summary: str | None = None) -> Any:
    """A PostgreSQL activity (records, stock, ledger) with the database policy."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=policies.DB_TIMEOUT,
        retry_policy=policies.DB_RETRY,
        summary=summary,
    )


def email_customer(
    order_id: str, kind: CustomerEmailKind, detail: str = ""
) -> workflow.ActivityHandle[None]:
    return workflow.start_activity_method(
        NotifyActivities.send_customer_email,
        CustomerEmail(order_id=order_id, kind=kind, detail=detail),
        task_queue=notify_task_queue(workflow.info().task_queue),
        start_to_close_timeout=policies.NOTIFY_TIMEOUT,
        schedule_to_close_timeout=policies.EMAIL_GIVE_UP,
        retry_policy=policies.NOTIFY_RETRY,
        summary=f"email customer: {kind.value}",
    )


def merchant_webhook(order_id: str, event_id: int, status: str) -> workflow.ActivityHandle[None]:
    """The signed ``order.<status>`` webhook of the order's event ``event_id``."""
    return workflow.start_activity_method(
        NotifyActivities.deliver_merchant_webhook,
        MerchantWebhook(order_id=order_id, event_id=event_id),
        task_queue=notify_task_queue(workflow.info().task_queue),
        start_to_close_timeout=policies.NOTIFY_TIMEOUT,
        schedule_to_close_timeout=policies.WEBHOOK_GIVE_UP,
        retry_policy=policies.NOTIFY_RETRY,
        summary=f"merchant webhook order.{status}",
    )
