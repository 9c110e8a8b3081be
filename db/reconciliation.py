"""The SQL of reconciliation: postings that do not balance, per posting, order, payout and
overall, in each currency (a balanced book sums to zero everywhere)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LedgerEntry


async def unbalanced(session: AsyncSession, by: str) -> list[tuple[str, str, int]]:
    """(subject, currency, sum) of every group whose legs do not sum to zero; ``by`` is
    ``posting``, ``order``, ``payout`` or ``overall``."""
    total = func.sum(LedgerEntry.amount)
    if by == "overall":
        overall = await session.execute(
            select(LedgerEntry.currency, total).group_by(LedgerEntry.currency).having(total != 0)
        )
        return [("all", str(row[0]), int(row[1])) for row in overall.all()]
    column = {
        "posting": LedgerEntry.posting_key,
        "order": LedgerEntry.order_id,
        "payout": LedgerEntry.payout_id,
    }[by]
    query = (
        select(column, LedgerEntry.currency, total)
        .group_by(column, LedgerEntry.currency)
        .having(total != 0)
    )
    if by in ("order", "payout"):
        query = query.where(column.is_not(None))
    rows = await session.execute(query)
    return [(str(subject), str(currency), int(amount)) for subject, currency, amount in rows.all()]


async def counts(session: AsyncSession) -> dict[str, int]:
    row = (
        await session.execute(
            select(
                func.count(func.distinct(LedgerEntry.posting_key)),
                func.count(func.distinct(LedgerEntry.order_id)),
                func.count(func.distinct(LedgerEntry.payout_id)),
            )
        )
    ).one()
    return {"postings": int(row[0]), "orders": int(row[1]), "payouts": int(row[2])}
