"""Ledger SQL: postings balance, and posting the same key twice adds nothing."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import ledger, order_records
from tests.db.conftest import make_order, make_shop


async def test_payment_and_refund_post_once_and_balance(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await make_shop(sessionmaker, {"A": 5})
    order_id = await make_order(sessionmaker, shop, [("A", 2)])
    for _ in range(2):  # an activity retried after a crash
        async with sessionmaker.begin() as session:
            order = await order_records.lock_order(session, order_id)
            assert order is not None
            await order_records.record_payment(
                session,
                order,
                payment_intent_id="pi_1",
                status="succeeded",
                charge_id="ch_1",
                amount=2000,
                currency="USD",
            )
    async with sessionmaker() as session:
        assert await ledger.balances(session, order_id=order_id) == {
            ledger.PROCESSOR_BALANCE: 2000,
            ledger.CUSTOMER_PAYMENTS: -2000,
        }
    async with sessionmaker.begin() as session:
        order = await order_records.lock_order(session, order_id)
        assert order is not None
        await order_records.record_refund(
            session, order, refund_id="re_1", amount=2000, currency="USD"
        )
        assert order.payment_status == "refunded"
    async with sessionmaker() as session:
        assert await ledger.balances(session, order_id=order_id) == {
            ledger.PROCESSOR_BALANCE: 0,
            ledger.CUSTOMER_PAYMENTS: 0,
        }


async def test_requires_action_posts_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await make_shop(sessionmaker, {"A": 5})
    order_id = await make_order(sessionmaker, shop, [("A", 1)])
    async with sessionmaker.begin() as session:
        order = await order_records.lock_order(session, order_id)
        assert order is not None
        await order_records.record_payment(
            session,
            order,
            payment_intent_id="pi_2",
            status="requires_action",
            charge_id=None,
            amount=1000,
            currency="USD",
        )
    async with sessionmaker() as session:
        assert await ledger.balances(session, order_id=order_id) == {}


async def test_an_unbalanced_posting_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        with pytest.raises(ledger.UnbalancedPosting):
            await ledger.post(session, "bad", [("a", 100), ("b", -99)], currency="USD")
