"""Merchant repository: the queries behind authentication and ``/api/v1/merchants``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Merchant


async def create_merchant(
    session: AsyncSession,
    *,
    merchant_id: str,
    name: str,
    email: str,
    webhook_secret_sealed: str,
    webhook_url: str | None,
    stripe_account: str | None,
    tiktok_shop_id: str | None,
    ship_from: dict[str, Any] | None,
    shipping_policy: dict[str, Any] | None,
) -> Merchant | None:
    """The new merchant, or ``None`` when a unique field (the TikTok shop) is taken."""
    return await session.scalar(
        insert(Merchant)
        .values(
            id=merchant_id,
            name=name,
            email=email,
            webhook_secret_sealed=webhook_secret_sealed,
            webhook_url=webhook_url,
            stripe_account=stripe_account,
            tiktok_shop_id=tiktok_shop_id,
            ship_from=ship_from,
            shipping_policy=shipping_policy,
        )
        .on_conflict_do_nothing()
        .returning(Merchant)
    )


async def get_merchant(session: AsyncSession, merchant_id: str) -> Merchant | None:
    return await session.scalar(select(Merchant).where(Merchant.id == merchant_id))


async def update_merchant(
    session: AsyncSession, merchant: Merchant, changes: dict[str, Any]
) -> Merchant:
    """Apply ``changes`` (column name → value; only ``UPDATABLE`` columns)."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"merchant columns not updatable: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(merchant, name, value)
    await session.flush()
    return merchant


UPDATABLE = frozenset({"webhook_url", "ship_from", "shipping_policy", "stripe_account"})


async def get_merchant_by_tiktok_shop(session: AsyncSession, shop_id: str) -> Merchant | None:
    return await session.scalar(select(Merchant).where(Merchant.tiktok_shop_id == shop_id))


# --- the webhook endpoint's circuit breaker ------------------------------------


async def webhook_delivered(session: AsyncSession, merchant_id: str) -> None:
    """A 2xx: the endpoint is healthy again."""
    await session.execute(
        update(Merchant)
        .where(Merchant.id == merchant_id, Merchant.webhook_failures > 0)
        .values(webhook_failures=0, webhook_parked_until=None, webhook_last_error=None)
    )


async def webhook_failed(
    session: AsyncSession, merchant_id: str, error: str, *, threshold: int, cooldown: timedelta
) -> datetime | None:
    """Count a failed delivery; when it makes ``threshold`` in a row, park the endpoint for
    ``cooldown``. Returns until when the endpoint is parked (None: not parked)."""
    parked_until = await session.scalar(
        update(Merchant)
        .where(Merchant.id == merchant_id)
        .values(
            webhook_failures=Merchant.webhook_failures + 1,
            webhook_last_error=error[:500],
            webhook_parked_until=case(
                (Merchant.webhook_failures + 1 >= threshold, func.now() + cooldown),
                else_=Merchant.webhook_parked_until,
            ),
        )
        .returning(Merchant.webhook_parked_until)
    )
    return parked_until


async def reset_webhook_breaker(session: AsyncSession, merchant: Merchant) -> None:
    """A new or re-saved webhook URL gets a fresh start."""
    merchant.webhook_failures = 0
    merchant.webhook_parked_until = None
    merchant.webhook_last_error = None
    await session.flush()
