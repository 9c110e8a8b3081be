"""Inbox and outbox rows: verified webhooks recorded once, Temporal calls owed after a commit.

The relay that delivers outbox rows is :mod:`db.outbox`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import InboxEvent, OutboxMessage


async def record_inbox_event(
    session: AsyncSession, *, provider: str, event_id: str, event_type: str, payload: dict[str, Any]
) -> bool:
    """Record a verified webhook; ``False`` when this event was recorded before (a redelivery)."""
    inserted = await session.scalar(
        insert(InboxEvent)
        .values(provider=provider, event_id=event_id, event_type=event_type, payload=payload)
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(InboxEvent.id)
    )
    return inserted is not None


async def add_outbox_message(session: AsyncSession, message: OutboxMessage) -> int:
    session.add(message)
    await session.flush()
    return message.id


async def pending_outbox_ids(session: AsyncSession, workflow_id: str) -> list[int]:
    """Starts and signals for this workflow not delivered yet, oldest first."""
    rows = await session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.workflow_id == workflow_id, OutboxMessage.dispatched_at.is_(None))
        .order_by(OutboxMessage.id)
    )
    return list(rows)


async def purge_inbox(session: AsyncSession, older_than: timedelta, batch: int = 1000) -> int:
    """Delete verified webhooks kept longer than the retention (providers stopped retrying
    long before); returns how many went."""
    ids = (
        select(InboxEvent.id)
        .where(InboxEvent.received_at < func.now() - older_than)
        .order_by(InboxEvent.id)
        .limit(batch)
        .scalar_subquery()
    )
    result = await session.execute(delete(InboxEvent).where(InboxEvent.id.in_(ids)))
    return int(getattr(result, "rowcount", 0) or 0)
