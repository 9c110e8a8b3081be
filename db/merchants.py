"""Merchant repository: the queries behind authentication and ``/api/v1/merchants``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Merchant


async def create_merchant(
    session: AsyncSession,
    *,
    merchant_id: str,
    name: str,
    email: str,
    api_key_hash: str,
    api_key_prefix: str,
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
            api_key_hash=api_key_hash,
            api_key_prefix=api_key_prefix,
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


async def get_merchant_by_api_key_hash(session: AsyncSession, api_key_hash: str) -> Merchant | None:
    return await session.scalar(select(Merchant).where(Merchant.api_key_hash == api_key_hash))


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


UPDATABLE = frozenset({"webhook_url", "ship_from", "shipping_policy"})


async def get_merchant_by_tiktok_shop(session: AsyncSession, shop_id: str) -> Merchant | None:
    return await session.scalar(select(Merchant).where(Merchant.tiktok_shop_id == shop_id))
