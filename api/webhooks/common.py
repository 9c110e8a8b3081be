"""What every provider webhook does once its signature verified: read it and record it.

A verified event is always recorded (the inbox is unique per provider and
event id, so a redelivery changes nothing) and answered 2xx, also when the
engine cannot use it (not JSON, an odd shape, an unknown shop): a provider
retries anything else for days, and the sender's mistake never becomes our
500. Ids longer than the inbox keeps are recorded by their sha256; card
details are removed before anything is stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db import inbox

MAX_EVENT_ID = 128
MAX_EVENT_TYPE = 64
# Never stored: card and billing details a provider may put in an event.
SCRUBBED_KEYS = frozenset(
    {"card", "payment_method_details", "billing_details", "source", "card_present"}
)
MAX_DEPTH = 32


def parse_object(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The event as a JSON object, or (None, why not)."""
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, "the body is not valid JSON"
    if not isinstance(event, dict):
        return None, "the body is not a JSON object"
    return event, None


def event_key(value: object, raw: bytes) -> str:
    """An inbox id: the provider's id when it is a usable string, else the body's sha256."""
    if isinstance(value, str) and value and len(value) <= MAX_EVENT_ID and value.isprintable():
        return value
    basis = value.encode() if isinstance(value, str) and value else raw
    return "sha256:" + hashlib.sha256(basis).hexdigest()


def event_type(value: object) -> str:
    text = value if isinstance(value, str) else str(value) if value is not None else "unknown"
    return text[:MAX_EVENT_TYPE] or "unknown"


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy without card details (and without anything nested absurdly deep)."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {
            key: scrub(item, depth + 1) for key, item in value.items() if key not in SCRUBBED_KEYS
        }
    if isinstance(value, list):
        return [scrub(item, depth + 1) for item in value]
    if isinstance(value, str):
        return value.replace("\x00", "")
    return value


async def record(
    session: AsyncSession,
    *,
    provider: str,
    raw: bytes,
    event: dict[str, Any] | None,
    event_id: object,
    kind: object,
) -> bool:
    """Record a verified event; False when it was recorded before (a redelivery)."""
    payload = (
        scrub(event)
        if event is not None
        else {"unreadable": raw[:2048].decode("utf-8", "replace").replace("\x00", "")}
    )
    return await inbox.record_inbox_event(
        session,
        provider=provider,
        event_id=event_key(event_id, raw),
        event_type=event_type(kind),
        payload=payload,
    )
