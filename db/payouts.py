"""Payout repository: the payouts' read model, their ledger postings, the releasable ones,
and checkouts.

Postings (accounts of :mod:`db.ledger`), each keyed ``payout:{id}:<what>``:

- ``charge`` (checkouts; an order's charge is ``order:{id}:charge``):
  processor_balance +A, customer_payments -A
- ``split``: customer_payments +A, platform_fees -F, seller_payable -(A-F)
- ``transfer[:n]``: seller_payable +S, processor_balance -S
- ``reversal[:n]``: processor_balance +S, seller_payable -S
- ``unsplit`` (refunded before or after a reversed release): the split undone
- ``refund`` (checkouts; an order's is ``order:{id}:refund``): customer_payments +A,
  processor_balance -A
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import literal, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import ledger
from db.models import Checkout, Order, Payout
from fulfil.enums import PayoutStatus
from fulfil.ids import payout_posting_key, refund_posting_key

PLATFORM_FEES = "platform_fees"
SELLER_PAYABLE = "seller_payable"

# The legs of each posting, from (amount, fee): every one sums to zero.
LEGS = {
    "charge": lambda a, f: [(ledger.PROCESSOR_BALANCE, a), (ledger.CUSTOMER_PAYMENTS, -a)],
    "split": lambda a, f: [
        (ledger.CUSTOMER_PAYMENTS, a),
        (PLATFORM_FEES, -f),
        (SELLER_PAYABLE, -(a - f)),
    ],
    "transfer": lambda a, f: [(SELLER_PAYABLE, a), (ledger.PROCESSOR_BALANCE, -a)],
    "reversal": lambda a, f: [(ledger.PROCESSOR_BALANCE, a), (SELLER_PAYABLE, -a)],
    "unsplit": lambda a, f: [
        (PLATFORM_FEES, f),
        (SELLER_PAYABLE, a - f),
        (ledger.CUSTOMER_PAYMENTS, -a),
    ],
    "refund": lambda a, f: [(ledger.CUSTOMER_PAYMENTS, a), (ledger.PROCESSOR_BALANCE, -a)],
}


async def create_payout(
    session: AsyncSession,
    *,
    payout_id: str,
    merchant_id: str,
    source: str,
    stripe_account: str,
    amount: int,
    platform_fee: int,
    currency: str,
    status: PayoutStatus,
    order_id: str | None = None,
    checkout_id: str | None = None,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
) -> bool:
    """The payout row (once: a repeat is a no-op); False when it existed."""
    inserted = await session.scalar(
        insert(Payout)
        .values(
            id=payout_id,
            merchant_id=merchant_id,
            source=source,
            order_id=order_id,
            checkout_id=checkout_id,
            stripe_account=stripe_account,
            amount=amount,
            platform_fee=platform_fee,
            seller_amount=amount - platform_fee,
            currency=currency,
            status=status.value,
            payment_intent_id=payment_intent_id,
            charge_id=charge_id,
        )
        .on_conflict_do_nothing()
        .returning(Payout.id)
    )
    if inserted is not None and order_id is not None:
        await session.execute(update(Order).where(Order.id == order_id).values(payout_id=payout_id))
    return inserted is not None


async def get_payout(
    session: AsyncSession, payout_id: str, merchant_id: str | None = None, *, lock: bool = False
) -> Payout | None:
    """``merchant_id=None`` is the ops view (any merchant's)."""
    query = select(Payout).where(Payout.id == payout_id)
    if merchant_id is not None:
        query = query.where(Payout.merchant_id == merchant_id)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query.execution_options(populate_existing=True))


async def record(session: AsyncSession, payout: Payout, changes: dict[str, Any]) -> None:
    """Apply a status change (and the ids that came with it) to the read model."""
    for name, value in changes.items():
        setattr(payout, name, value)
    await session.flush()


async def post(
    session: AsyncSession,
    payout: Payout,
    what: str,
    *,
    amount: int,
    fee: int = 0,
    memo: str = "",
) -> None:
    """One of the payout's postings (see the module docstring); repeats are no-ops."""
    kind = what.split(":", 1)[0]
    if kind == "refund" and payout.order_id is not None:
        key = refund_posting_key(payout.order_id)  # the order's refund: posted once by either
    else:
        key = payout_posting_key(payout.id, what)
    await ledger.post(
        session,
        key,
        LEGS[kind](amount, fee),
        currency=payout.currency,
        order_id=payout.order_id,
        payout_id=payout.id,
        memo=memo,
    )


async def releasable_ids(session: AsyncSession, limit: int) -> list[str]:
    rows = await session.scalars(
        select(Payout.id)
        .where(Payout.status == PayoutStatus.RELEASABLE.value)
        .order_by(Payout.hold_until, Payout.id)
        .limit(limit)
    )
    return list(rows)


async def payout_for_charge(session: AsyncSession, charge_id: str) -> str | None:
    return await session.scalar(select(Payout.id).where(Payout.charge_id == charge_id))


async def payout_for_payment_intent(session: AsyncSession, payment_intent_id: str) -> str | None:
    return await session.scalar(
        select(Payout.id).where(Payout.payment_intent_id == payment_intent_id)
    )


async def list_payouts(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    status: PayoutStatus | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[Payout], bool]:
    """(page, has_more), newest first."""
    query = select(Payout).order_by(Payout.created_at.desc(), Payout.id.desc()).limit(limit + 1)
    if merchant_id is not None:
        query = query.where(Payout.merchant_id == merchant_id)
    if status is not None:
        query = query.where(Payout.status == status.value)
    if after is not None:
        query = query.where(
            tuple_(Payout.created_at, Payout.id) < tuple_(literal(after[0]), literal(after[1]))
        )
    rows = list(await session.scalars(query.execution_options(populate_existing=True)))
    return rows[:limit], len(rows) > limit


async def cursor(
    session: AsyncSession, payout_id: str, merchant_id: str | None
) -> tuple[datetime, str] | None:
    query = select(Payout.created_at, Payout.id).where(Payout.id == payout_id)
    if merchant_id is not None:
        query = query.where(Payout.merchant_id == merchant_id)
    row = (await session.execute(query)).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def released(session: AsyncSession) -> Sequence[Payout]:
    """Every payout that says money went to the seller (for reconciliation)."""
    return list(
        await session.scalars(
            select(Payout).where(Payout.status == PayoutStatus.RELEASED.value).order_by(Payout.id)
        )
    )


# --- checkouts ---------------------------------------------------------------------


async def create_checkout(
    session: AsyncSession,
    *,
    checkout_id: str,
    merchant_id: str,
    payout_id: str,
    listing: str,
    amount: int,
    currency: str,
    buyer_email: str,
    payment_method: str,
) -> None:
    session.add(
        Checkout(
            id=checkout_id,
            merchant_id=merchant_id,
            payout_id=payout_id,
            listing=listing,
            amount=amount,
            currency=currency,
            buyer_email=buyer_email,
            payment_method=payment_method,
        )
    )
    await session.flush()


async def get_checkout(session: AsyncSession, checkout_id: str) -> Checkout | None:
    return await session.get(Checkout, checkout_id)
