"""Order record SQL: a status event is recorded once, a TikTok order is saved once."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import order_records
from db.models import Order, OrderEvent
from fulfil.enums import FailureReason, OrderStatus
from fulfil.messages.common import Address
from fulfil.messages.tiktok import TikTokLine, TikTokOrder
from tests.db.conftest import make_order, make_shop


async def test_status_event_is_recorded_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await make_shop(sessionmaker, {"A": 1})
    order_id = await make_order(sessionmaker, shop, [("A", 1)])
    ids = []
    for _ in range(2):
        async with sessionmaker.begin() as session:
            order = await order_records.lock_order(session, order_id)
            assert order is not None
            event_id, webhook_url = await order_records.record_status(
                session,
                order,
                OrderStatus.FAILED,
                "order.failed",
                "shipping_unavailable",
                FailureReason.SHIPPING_UNAVAILABLE,
            )
            ids.append(event_id)
    assert ids[0] == ids[1]
    assert webhook_url is None
    async with sessionmaker() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        assert (order.status, order.failure_reason) == ("failed", "shipping_unavailable")
        count = await session.scalar(select(func.count()).where(OrderEvent.order_id == order_id))
        assert count == 1


async def test_a_tiktok_order_is_saved_once_even_concurrently(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await make_shop(sessionmaker, {"CANDLE-1": 5})
    tt = TikTokOrder(
        shop_id="7494",
        tiktok_order_id="576461413038785752",
        status="AWAITING_SHIPMENT",
        currency="USD",
        lines=[TikTokLine(sku="CANDLE-1", quantity=2, unit_price=1500)],
        subtotal=3000,
        shipping=500,
        total=3200,
        recipient=Address(name="B", street1="2 High St", city="Y", zip="2", country="US"),
        package_id="pkg_1",
    )

    async def save() -> str:
        async with sessionmaker.begin() as session:
            return await order_records.save_tiktok_order(session, shop, tt)

    saved = await asyncio.gather(*(save() for _ in range(4)))
    assert len(set(saved)) == 1
    async with sessionmaker() as session:
        order = await session.get(Order, saved[0])
        assert order is not None
        assert (order.source, order.external_id, order.discount) == (
            "tiktok",
            "576461413038785752",
            300,
        )


async def test_the_inbox_forgets_after_its_retention(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from datetime import timedelta

    from sqlalchemy import text

    from db import inbox

    old, new = f"evt_old_{uuid.uuid4().hex}", f"evt_new_{uuid.uuid4().hex}"
    async with sessionmaker.begin() as session:
        for event_id in (old, new):
            await inbox.record_inbox_event(
                session, provider="stripe", event_id=event_id, event_type="x", payload={}
            )
        await session.execute(
            text(
                "UPDATE inbox_events SET received_at = now() - interval '31 days' "
                "WHERE event_id = :e"
            ),
            {"e": old},
        )
    async with sessionmaker.begin() as session:
        assert await inbox.purge_inbox(session, timedelta(days=30)) >= 1
    async with sessionmaker() as session:
        left = set(
            await session.scalars(
                text("SELECT event_id FROM inbox_events WHERE event_id IN (:a, :b)"),
                {"a": old, "b": new},
            )
        )
    assert left == {new}
