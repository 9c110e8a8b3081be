"""A no-op twin of ``OrderPlacement`` up to ``fulfilling``: the ceiling ``bench/throughput.py``
compares the engine with.

The same shape as a storefront order paid by card (no 3-D Secure, no Connect payout) until
its status is ``fulfilling``: ten sequential activities (price, shipment plan, quote rates,
reserve stock, status ``awaiting_payment``, charge, record payment, commit stock, status
``paid``, status ``fulfilling``), four notifications started in the background on a queue of
their own (a merchant webhook per status and the confirmation email), a search attribute
upsert and current details per status, a summary on every activity, and the ``Shipment``
child started, which runs the six activities the real ``Shipment`` runs meanwhile (plan, quote,
label, records): twenty activities per order, as the engine's. Every activity returns a small
pydantic value at once; the run then waits for its notifications and ends (``OrderPlacement``
waits for them at its end). Nothing here runs at import (``bench/noop_worker.py`` runs it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from fulfil.temporal import MERCHANT_ID, ORDER_ID, ORDER_STATUS
    from workflows import policies

# The activities OrderPlacement awaits in turn until ``fulfilling`` (None: a status record).
STEPS: tuple[tuple[str, str | None], ...] = (
    ("priced_order", None),
    ("shipment_plan", None),
    ("quote_rates", None),
    ("reserve_stock", None),
    ("record_status", "awaiting_payment"),
    ("charge", None),
    ("record_payment", None),
    ("commit_stock", None),
    ("record_status", "paid"),
    ("record_status", "fulfilling"),
)
# The background notifications started before ``fulfilling``: one webhook per status, one email.
NOTIFICATIONS = 4


class NoopStep(BaseModel):
    order_id: str
    step: str
    status: str | None = None


class NoopDone(BaseModel):
    order_id: str
    step: str
    event_id: int = 1
    notify_merchant: bool = True


class NoopOrderInput(BaseModel):
    order_id: str
    merchant_id: str
    notify_task_queue: str


@activity.defn
async def noop_step(step: NoopStep) -> NoopDone:
    return NoopDone(order_id=step.order_id, step=step.step)


@activity.defn
async def noop_notify(step: NoopStep) -> NoopDone:
    return NoopDone(order_id=step.order_id, step=step.step, notify_merchant=False)


# What the real ``Shipment`` child does in the same window, in the same number of activities:
# its plan, quote and label, and the shipment and tracking records that follow.
SHIPMENT_STEPS = (
    "shipment_plan",
    "quote_rates",
    "buy_label",
    "record_shipment",
    "record_tracking",
    "record_shipment",
)


@workflow.defn
class NoopShipment:
    @workflow.run
    async def run(self, inp: NoopOrderInput) -> NoopDone:
        for name in SHIPMENT_STEPS:
            await workflow.execute_activity(
                noop_step,
                NoopStep(order_id=inp.order_id, step=name),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_RETRY,
                summary=name,
            )
        return NoopDone(order_id=inp.order_id, step="shipment")


@workflow.defn
class NoopOrder:
    @workflow.run
    async def run(self, inp: NoopOrderInput) -> NoopDone:
        background: list[asyncio.Task[Any]] = []

        def notify(what: str) -> None:
            background.append(
                workflow.start_activity(
                    noop_notify,
                    NoopStep(order_id=inp.order_id, step=what),
                    task_queue=inp.notify_task_queue,
                    start_to_close_timeout=policies.NOTIFY_TIMEOUT,
                    schedule_to_close_timeout=policies.WEBHOOK_GIVE_UP,
                    retry_policy=policies.NOTIFY_RETRY,
                    summary=f"merchant webhook {what}",
                )
            )

        for name, status in STEPS:
            workflow.set_current_details(f"**pending** · {name}")
            done = await workflow.execute_activity(
                noop_step,
                NoopStep(order_id=inp.order_id, step=name, status=status),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_RETRY,
                summary=f"{name} {status or ''}",
            )
            if status is not None:
                workflow.upsert_search_attributes([ORDER_STATUS.value_set(status)])
                workflow.set_current_details(f"**{status}** · {name}")
                if done.notify_merchant:
                    notify(f"order.{status}")
                if status == "paid":
                    notify("email customer: confirmed")
        await workflow.start_child_workflow(
            NoopShipment.run,
            inp,
            id=f"noop-shipment-{inp.order_id}",
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(MERCHANT_ID, inp.merchant_id),
                    SearchAttributePair(ORDER_ID, inp.order_id),
                ]
            ),
            static_summary=f"Shipment of order {inp.order_id}",
        )
        await asyncio.gather(*background, return_exceptions=True)
        return NoopDone(order_id=inp.order_id, step="fulfilling")
