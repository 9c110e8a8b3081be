"""``fulfil payouts run|list`` and ``fulfil reconcile``: escrowed payouts and the books, as ops.

``run`` triggers the ``payout-release`` schedule now (``POST /api/v1/ops/payout-runs``, the run
the schedule would start); ``list`` pages through ``GET /api/v1/payouts`` (all merchants' for
ops; the API filters by status only); ``reconcile`` prints ``GET /api/v1/ops/reconciliation``
and says through its exit code whether the books balance.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.table import Table

from fulfil.settings import Settings
from ops.api import Service
from ops.config import EXIT_FOUND_PROBLEM, EXIT_OK
from ops.display import money, out, status, text, when


async def trigger_payout_run(settings: Settings) -> None:
    async with Service("the API", settings.api_base, key=settings.ops_api_key) as api:
        answer = await api.post("/api/v1/ops/payout-runs")
    schedule = text((answer or {}).get("schedule", "payout-release"))
    out.print(
        f"Triggered the [bold]{schedule}[/bold] schedule: every payout whose hold has passed "
        "is released now (one transfer each). Follow them with [bold]fulfil payouts list "
        "--status released[/bold]."
    )


async def list_payouts(
    settings: Settings, *, payout_status: str | None, limit: int, as_json: bool
) -> None:
    params = {"status": payout_status} if payout_status else {}
    rows: list[dict[str, Any]] = []
    more = False
    async with Service("the API", settings.api_base, key=settings.ops_api_key) as api:
        async for payout in api.pages("/api/v1/payouts", id_field="payout_id", params=params):
            if len(rows) == limit:
                more = True
                break
            rows.append(payout)
    if as_json:
        out.print_json(json.dumps({"data": rows, "has_more": more}))
        return
    out.print(payouts_table(rows, payout_status))
    counts = Counter(str(row["status"]) for row in rows)
    by_status = ", ".join(f"{status(name)} {count}" for name, count in sorted(counts.items()))
    shown = f"{len(rows)} payout{'s' if len(rows) != 1 else ''}"
    if more:
        shown += f" (the newest {limit}; more with --limit)"
    out.print(f"{shown}{': ' + by_status if by_status else ''}")


def payouts_table(rows: list[dict[str, Any]], payout_status: str | None) -> Table:
    title = "payouts, newest first" + (f" ({payout_status})" if payout_status else "")
    table = Table(title=title, title_justify="left")
    table.add_column("payout", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("amount", justify="right")
    table.add_column("fee", justify="right")
    table.add_column("seller", justify="right")
    table.add_column("for", no_wrap=True)
    table.add_column("hold until", no_wrap=True)
    table.add_column("transfer / note", overflow="fold")
    for row in rows:
        currency = row.get("currency")
        subject = row.get("order_id") or row.get("checkout_id")
        note = row.get("transfer_id") or row.get("transfer_error") or row.get("dispute_id")
        table.add_row(
            text(row["payout_id"]),
            status(row["status"]),
            money(row.get("amount"), currency),
            money(row.get("platform_fee"), currency),
            money(row.get("seller_amount"), currency),
            text(subject),
            when(row.get("hold_until")),
            text(note),
        )
    return table


async def reconcile(settings: Settings, *, as_json: bool) -> int:
    async with Service("the API", settings.api_base, key=settings.ops_api_key) as api:
        report: dict[str, Any] = await api.get("/api/v1/ops/reconciliation")
    differences = report.get("differences") or []
    balanced = bool(report.get("balanced")) and not differences
    if as_json:
        out.print_json(json.dumps(report))
        return EXIT_OK if balanced else EXIT_FOUND_PROBLEM
    checked = report.get("checked") or {}
    if checked:
        counted = ", ".join(f"{name} {count}" for name, count in checked.items())
        out.print(f"checked: {counted}")
    if balanced:
        out.print(
            "[green bold]Balanced:[/green bold] debits equal credits per order, per payout and "
            "overall; every released payout has its one transfer at Stripe."
        )
        return EXIT_OK
    table = Table(title=f"differences: {len(differences)}", title_justify="left")
    table.add_column("kind", overflow="fold")
    table.add_column("subject", overflow="fold")
    table.add_column("expected", justify="right")
    table.add_column("found", justify="right")
    table.add_column("detail")
    for difference in differences:
        table.add_row(
            text(difference.get("kind")),
            text(difference.get("subject")),
            text(difference.get("expected")),
            text(difference.get("found")),
            text(difference.get("detail")),
        )
    out.print(table)
    out.print("[red bold]Not balanced.[/red bold]")
    return EXIT_FOUND_PROBLEM
