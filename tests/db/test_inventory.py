"""Stock SQL: reservations are all-or-nothing, never oversell, and repeat harmlessly."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import inventory
from db.order_records import lock_order
from tests.db.conftest import make_order, make_shop, stock_of


async def _reserve(sessionmaker: async_sessionmaker[AsyncSession], order_id: str) -> bool:
    async with sessionmaker.begin() as session:
        order = await lock_order(session, order_id)
        assert order is not None
        return await inventory.reserve(session, order)


async def test_reserve_commit_and_repeat(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    shop = await make_shop(sessionmaker, {"A": 5, "B": 3})
    order = await make_order(sessionmaker, shop, [("A", 2), ("B", 1), ("A", 1)])
    assert await _reserve(sessionmaker, order) is True
    assert await _reserve(sessionmaker, order) is False  # a retry finds its reservation
    assert await stock_of(sessionmaker, shop, "A") == (5, 3)
    async with sessionmaker.begin() as session:
        assert await inventory.commit(session, order) == 2
    async with sessionmaker.begin() as session:
        assert await inventory.commit(session, order) == 0
    assert await stock_of(sessionmaker, shop, "A") == (2, 0)
    assert await stock_of(sessionmaker, shop, "B") == (2, 0)


async def test_short_line_reserves_nothing(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    shop = await make_shop(sessionmaker, {"A": 5, "B": 1})
    order = await make_order(sessionmaker, shop, [("A", 2), ("B", 2)])
    with pytest.raises(inventory.NotEnoughStock) as short:
        await _reserve(sessionmaker, order)
    assert short.value.sku == "B"
    assert await stock_of(sessionmaker, shop, "A") == (5, 0)


async def test_release_undoes_reserved_and_committed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await make_shop(sessionmaker, {"A": 5})
    reserved = await make_order(sessionmaker, shop, [("A", 2)])
    committed = await make_order(sessionmaker, shop, [("A", 1)])
    await _reserve(sessionmaker, reserved)
    await _reserve(sessionmaker, committed)
    async with sessionmaker.begin() as session:
        await inventory.commit(session, committed)
    assert await stock_of(sessionmaker, shop, "A") == (4, 2)
    for _ in range(2):  # the second time changes nothing
        async with sessionmaker.begin() as session:
            await inventory.release(session, reserved)
            await inventory.release(session, committed)
    assert await stock_of(sessionmaker, shop, "A") == (5, 0)


async def test_concurrent_orders_never_oversell(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await make_shop(sessionmaker, {"A": 10, "B": 10})
    orders = [await make_order(sessionmaker, shop, [("B", 1), ("A", 1)]) for _ in range(25)]

    async def attempt(order_id: str) -> bool:
        try:
            return await _reserve(sessionmaker, order_id)
        except inventory.NotEnoughStock:
            return False

    results = await asyncio.gather(*(attempt(o) for o in orders))
    assert sum(results) == 10
    assert await stock_of(sessionmaker, shop, "A") == (10, 10)
    assert await stock_of(sessionmaker, shop, "B") == (10, 10)
