"""What the business metrics count, read from the tables the workflows write (exact, across
every worker and API process, and unaffected by retries or restarts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment, Merchant, Order, Payout


@dataclass
class BusinessCounts:
    # (source, status) → orders
    orders: dict[tuple[str, str], int] = field(default_factory=dict)
    labels_bought: int = 0
    # (status, currency) → (payouts, seller amount in minor units)
    payouts: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    # status → deployments
    deployments: dict[str, int] = field(default_factory=dict)
    webhook_endpoints_parked: int = 0


async def business_counts(session: AsyncSession) -> BusinessCounts:
    counts = BusinessCounts()
    rows = await session.execute(
        select(Order.source, Order.status, func.count()).group_by(Order.source, Order.status)
    )
    counts.orders = {(source, status): n for source, status, n in rows.tuples()}
    counts.labels_bought = int(
        await session.scalar(
            select(func.count()).select_from(Order).where(Order.tracking_number.is_not(None))
        )
        or 0
    )
    payout_rows = await session.execute(
        select(
            Payout.status, Payout.currency, func.count(), func.sum(Payout.seller_amount)
        ).group_by(Payout.status, Payout.currency)
    )
    counts.payouts = {
        (status, currency): (n, int(amount or 0))
        for status, currency, n, amount in payout_rows.tuples()
    }
    deployment_rows = await session.execute(
        select(Deployment.status, func.count()).group_by(Deployment.status)
    )
    counts.deployments = {status: n for status, n in deployment_rows.tuples()}
    counts.webhook_endpoints_parked = int(
        await session.scalar(
            select(func.count())
            .select_from(Merchant)
            .where(Merchant.webhook_parked_until > func.now())
        )
        or 0
    )
    return counts
