"""Ledger activities: a payment's or refund's provider ids on the order, posted once each.

Postings are double-entry and keyed by business ids (``order:{id}:charge``),
so a retried activity finds its posting and adds nothing (:mod:`db.ledger`).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.order_records import locked_order
from db import order_records
from fulfil.messages.orders import PaymentRecord, RefundRecord


class LedgerActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def record_payment(self, payment: PaymentRecord) -> None:
        """Store the provider ids; a succeeded payment is posted to the ledger once."""
        async with self._sessionmaker.begin() as session:
            order = await locked_order(session, payment.order_id)
            await order_records.record_payment(
                session,
                order,
                payment_intent_id=payment.payment_intent_id,
                status=str(payment.status),
                charge_id=payment.charge_id,
                amount=payment.amount,
                currency=payment.currency,
            )

    @activity.defn
    async def record_refund(self, record: RefundRecord) -> None:
        async with self._sessionmaker.begin() as session:
            order = await locked_order(session, record.order_id)
            await order_records.record_refund(
                session,
                order,
                refund_id=record.refund.refund_id,
                amount=record.refund.amount,
                currency=record.currency,
            )
