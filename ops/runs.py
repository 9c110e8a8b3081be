"""Temporal as ops see it: a client with the engine's codec, links into the UI, an order's runs.

Workflow ids are business ids (``fulfil.ids``): ``order-{order_id}``, ``shipment-{order_id}``,
``payout-{payout_id}``; a TikTok order's run is ``tiktok-{shop_id}-{tiktok_order_id}``, found
through its ``TikTokOrderId`` search attribute since the order does not carry the shop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from fulfil.ids import order_workflow_id, payout_workflow_id, shipment_workflow_id
from fulfil.settings import Settings
from fulfil.temporal import TIKTOK_ORDER_ID, connect
from ops.config import OpsError
from workflows.names import workflow_name
from workflows.tiktok_fulfillment import TikTokFulfillment

CONNECT_SECONDS = 10.0
LOOKUP_SECONDS = 10.0


async def connect_temporal(settings: Settings) -> Client:
    """The engine's client (its data converter: the codec); a clear error when it is down."""
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            return await connect(settings)
    except (RuntimeError, OSError, TimeoutError) as err:
        reason = "timed out" if isinstance(err, TimeoutError) else str(err).splitlines()[0]
        raise OpsError(
            f"cannot reach Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}): {reason}"
        ) from err


def run_link(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    """The run's page in the Temporal UI (its latest run without ``run_id``)."""
    base = f"{_namespace_url(settings)}/workflows/{quote(workflow_id, safe='')}"
    return f"{base}/{quote(run_id, safe='')}/history" if run_id else base


def search_link(settings: Settings, query: str) -> str:
    """The UI's workflow list filtered by a visibility query."""
    return f"{_namespace_url(settings)}/workflows?query={quote(query, safe='')}"


def _namespace_url(settings: Settings) -> str:
    ui = settings.temporal_ui_url.rstrip("/")
    return f"{ui}/namespaces/{quote(settings.temporal_namespace, safe='')}"


@dataclass
class RunRef:
    """A workflow run of an order as Temporal knows it (``status`` None: not found)."""

    role: str
    workflow_id: str
    workflow_type: str | None = None
    run_id: str | None = None
    status: str | None = None
    started: str | None = None
    closed: str | None = None


def tiktok_query(tiktok_order_id: str) -> str:
    name = workflow_name(TikTokFulfillment.run)
    return f"WorkflowType = '{name}' AND {TIKTOK_ORDER_ID.name} = '{_quoted(tiktok_order_id)}'"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def find_tiktok_workflow_id(client: Client, tiktok_order_id: str) -> str | None:
    async with asyncio.timeout(LOOKUP_SECONDS):
        async for execution in client.list_workflows(tiktok_query(tiktok_order_id), limit=1):
            return execution.id
    return None


async def order_runs(client: Client | None, order: dict[str, Any]) -> list[RunRef]:
    """The order's own run, its ``Shipment`` child and its payout, described when reachable."""
    order_id = str(order["order_id"])
    if order["source"] == "tiktok":
        found = None
        if client is not None and order.get("external_id"):
            found = await find_tiktok_workflow_id(client, str(order["external_id"]))
        main = RunRef("order", found or "")
    else:
        main = RunRef("order", order_workflow_id(order_id))
    refs = [main, RunRef("shipment", shipment_workflow_id(order_id))]
    if order.get("payout_id"):
        refs.append(RunRef("payout", payout_workflow_id(str(order["payout_id"]))))
    if client is not None:
        await asyncio.gather(*(describe(client, ref) for ref in refs if ref.workflow_id))
    return refs


async def describe(client: Client, ref: RunRef) -> None:
    try:
        async with asyncio.timeout(LOOKUP_SECONDS):
            description = await client.get_workflow_handle(ref.workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return
        raise OpsError(f"Temporal refused to describe {ref.workflow_id}: {err.message}") from err
    ref.workflow_type = description.workflow_type
    ref.run_id = description.run_id
    ref.status = description.status.name if description.status else None
    ref.started = description.start_time.isoformat()
    ref.closed = description.close_time.isoformat() if description.close_time else None
