"""How the CLI shows money, times and statuses (rich markup), the same in every command."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

# Stripe's zero-decimal currencies: an amount in minor units is already whole units.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)

PIPE_WIDTH = 200

STATUS_STYLES = {
    # orders
    "pending": "dim",
    "awaiting_payment": "yellow",
    "paid": "cyan",
    "fulfilling": "cyan",
    "shipped": "blue",
    "delivered": "green",
    "cancelled": "magenta",
    "failed": "red",
    "refunded": "magenta",
    # payouts
    "holding": "yellow",
    "disputed": "red",
    "releasable": "cyan",
    "released": "green",
    # deployments and steps
    "running": "cyan",
    "succeeded": "green",
    "skipped": "dim",
    "rolled_back": "magenta",
    # Temporal runs
    "RUNNING": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "TIMED_OUT": "red",
    "TERMINATED": "red",
    "CANCELED": "magenta",
    "CONTINUED_AS_NEW": "dim",
}

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)
if not out.is_terminal:  # a pipe, a log, a test: no terminal to fit, ids must stay whole
    out.width = max(out.width, PIPE_WIDTH)


def money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    code = (currency or "").upper()
    if code in ZERO_DECIMAL:
        return f"{amount:,} {code}".strip()
    sign = "-" if amount < 0 else ""
    units, cents = divmod(abs(amount), 100)
    return f"{sign}{units:,}.{cents:02d} {code}".strip()


def status(value: str | None) -> str:
    if not value:
        return "—"
    style = STATUS_STYLES.get(value)
    text = escape(value)
    return f"[{style}]{text}[/{style}]" if style else text


def when(value: str | None) -> str:
    """An RFC 3339 time as ``2026-05-01 10:00:00Z`` (UTC)."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def text(value: object) -> str:
    """Any value as escaped markup; ``None`` as a dash."""
    return "—" if value is None or value == "" else escape(str(value))
