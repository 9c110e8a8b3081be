"""API keys: looked up by their sha256, minted per role, rotated with a grace period."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ApiKey

# How stale ``last_used_at`` may get before a request writes it again.
LAST_USED_RESOLUTION = timedelta(seconds=60)


async def create_key(
    session: AsyncSession, *, key_id: str, merchant_id: str, key_hash: str, prefix: str, role: str
) -> ApiKey:
    key = ApiKey(id=key_id, merchant_id=merchant_id, key_hash=key_hash, prefix=prefix, role=role)
    session.add(key)
    await session.flush()
    await session.refresh(key)
    return key


async def find_live_key(session: AsyncSession, key_hash: str) -> ApiKey | None:
    """The key with this hash, unless it has expired."""
    return await session.scalar(
        select(ApiKey).where(
            ApiKey.key_hash == key_hash,
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
        )
    )


async def touch(session: AsyncSession, key_id: str, now: datetime) -> None:
    """Record a use, at most once per ``LAST_USED_RESOLUTION``."""
    await session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(
                ApiKey.last_used_at.is_(None),
                ApiKey.last_used_at < now - LAST_USED_RESOLUTION,
            ),
        )
        .values(last_used_at=now)
    )


async def list_keys(session: AsyncSession, merchant_id: str) -> list[ApiKey]:
    """The merchant's keys that still work, oldest first."""
    rows = await session.scalars(
        select(ApiKey)
        .where(
            ApiKey.merchant_id == merchant_id,
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
        )
        .order_by(ApiKey.created_at, ApiKey.id)
    )
    return list(rows)


async def get_key(session: AsyncSession, merchant_id: str, key_id: str) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey)
        .where(ApiKey.merchant_id == merchant_id, ApiKey.id == key_id)
        .with_for_update()
    )


async def lasting_owner_keys(session: AsyncSession, merchant_id: str) -> int:
    """Owner keys with no expiry: the ones that keep the merchant able to manage itself."""
    count = await session.scalar(
        select(func.count()).where(
            ApiKey.merchant_id == merchant_id,
            ApiKey.role == "owner",
            ApiKey.expires_at.is_(None),
        )
    )
    return int(count or 0)


async def expire_key(session: AsyncSession, key: ApiKey, at: datetime) -> None:
    key.expires_at = at
    await session.flush()
