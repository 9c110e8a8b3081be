"""The double-entry ledger: every posting's legs sum to zero, and posting twice is a no-op.

A posting is identified by its business key (``order:{id}:charge``,
``payout:{id}:transfer``...); its legs are unique on (key, account), so an
activity retried after a crash finds its own posting and adds nothing.
Amounts are minor units: a debit is positive, a credit negative.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LedgerEntry

# Accounts (the platform's view).
PROCESSOR_BALANCE = "processor_balance"  # money held at Stripe for us
CUSTOMER_PAYMENTS = "customer_payments"  # what customers paid (credit = revenue to explain)


class UnbalancedPosting(ValueError):
    """A posting whose legs do not sum to zero: a bug, never written."""


async def post(
    session: AsyncSession,
    posting_key: str,
    legs: Sequence[tuple[str, int]],
    *,
    currency: str,
    order_id: str | None = None,
    payout_id: str | None = None,
    memo: str = "",
) -> None:
    """One balanced posting; posting the same key again changes nothing."""
    if sum(amount for _, amount in legs) != 0:
        raise UnbalancedPosting(f"posting {posting_key} does not balance: {list(legs)}")
    await session.execute(
        insert(LedgerEntry)
        .values(
            [
                {
                    "posting_key": posting_key,
                    "order_id": order_id,
                    "payout_id": payout_id,
                    "account": account,
                    "amount": amount,
                    "currency": currency,
                    "memo": memo,
                }
                for account, amount in legs
            ]
        )
        .on_conflict_do_nothing(index_elements=["posting_key", "account"])
    )


async def balances(session: AsyncSession, *, order_id: str) -> dict[str, int]:
    """Account → balance of one order's postings."""
    rows = await session.execute(
        select(LedgerEntry.account, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.order_id == order_id)
        .group_by(LedgerEntry.account)
    )
    return {account: int(total) for account, total in rows.all()}
