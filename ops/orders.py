"""``fulfil orders show ID``: an order as PostgreSQL keeps it, and its runs in Temporal.

The order comes from ``GET /api/v1/orders/{id}`` with the ops key (status, totals, payment,
shipment, the event history); its runs (the order's own, the ``Shipment`` child, the payout)
are described by Temporal with a link into the UI each. Temporal being down still shows the
order, with the links and a note.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from fulfil.settings import Settings
from ops.api import Service
from ops.config import OpsError
from ops.display import money, out, status, text, when
from ops.runs import RunRef, connect_temporal, order_runs, run_link, search_link, tiktok_query


async def show_order(settings: Settings, order_id: str, *, as_json: bool) -> None:
    async with Service("the API", settings.api_base, key=settings.ops_api_key) as api:
        order: dict[str, Any] = await api.get(f"/api/v1/orders/{quote(order_id, safe='')}")
    note = None
    try:
        client = await connect_temporal(settings)
    except OpsError as err:
        client, note = None, str(err)
    refs = await order_runs(client, order)
    if as_json:
        runs = [{**ref.__dict__, "link": _link(settings, order, ref)} for ref in refs]
        out.print_json(json.dumps({"order": order, "runs": runs}))
        return
    out.print(order_panel(order))
    out.print(runs_table(settings, order, refs))
    if note:
        out.print(f"[yellow]Temporal not read:[/yellow] {text(note)}")


def order_panel(order: dict[str, Any]) -> Panel:
    totals = order["totals"]
    currency = totals.get("currency")
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("status", status(order["status"]))
    source = text(order["source"])
    if order.get("external_id"):
        source += f" (TikTok order {text(order['external_id'])})"
    summary.add_row("source", source)
    summary.add_row("created", when(order.get("created_at")))
    summary.add_row(
        "totals",
        f"subtotal {money(totals.get('subtotal'), currency)}  "
        f"discount {money(totals.get('discount'), currency)}  "
        f"shipping {money(totals.get('shipping'), currency)}  "
        f"[bold]total {money(totals.get('total'), currency)}[/bold]",
    )
    payment = order.get("payment")
    summary.add_row(
        "payment",
        f"{status(payment.get('status'))}  {text(payment.get('payment_intent_id'))}"
        if payment
        else "—",
    )
    shipment = order.get("shipment")
    if shipment:
        summary.add_row(
            "shipment",
            f"{status(shipment.get('status'))}  {text(shipment.get('carrier'))} "
            f"{text(shipment.get('service'))}  tracking {text(shipment.get('tracking_number'))}",
        )
        if shipment.get("label_url"):
            summary.add_row("label", text(shipment["label_url"]))
    else:
        summary.add_row("shipment", "—")
    summary.add_row("payout", text(order.get("payout_id")))

    items = Table(title="items", title_justify="left", expand=False)
    items.add_column("sku")
    items.add_column("qty", justify="right")
    items.add_column("unit price", justify="right")
    for item in order["items"]:
        items.add_row(
            text(item["sku"]), str(item["quantity"]), money(item.get("unit_price"), currency)
        )

    events = Table(title="events (oldest first)", title_justify="left")
    events.add_column("at", no_wrap=True)
    events.add_column("type", no_wrap=True)
    events.add_column("detail")
    for event in order.get("events", []):
        events.add_row(when(event["at"]), text(event["type"]), text(event.get("detail")))
    return Panel(
        Group(summary, "", items, "", events),
        title=f"[bold]order {text(order['order_id'])}[/bold]",
        title_align="left",
        expand=False,
    )


def runs_table(settings: Settings, order: dict[str, Any], refs: list[RunRef]) -> Table:
    table = Table(title="Temporal runs", title_justify="left")
    table.add_column("run")
    table.add_column("workflow id")
    table.add_column("type")
    table.add_column("status")
    table.add_column("started", no_wrap=True)
    table.add_column("UI", overflow="fold")
    for ref in refs:
        shown_status = status(ref.status) if ref.status else "[dim]not found[/dim]"
        table.add_row(
            ref.role,
            text(ref.workflow_id or None),
            text(ref.workflow_type),
            shown_status,
            when(ref.started),
            text(_link(settings, order, ref)),
        )
    return table


def _link(settings: Settings, order: dict[str, Any], ref: RunRef) -> str:
    if ref.workflow_id:
        return run_link(settings, ref.workflow_id)
    # A TikTok order whose run was not found (Temporal unreachable): the UI can search for it.
    return search_link(settings, tiktok_query(str(order.get("external_id") or "")))
