"""Repository tests: the SQL of ``db/`` against the test session's own PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Merchant, Order, OrderItem, Product


async def make_shop(sessionmaker: async_sessionmaker[AsyncSession], stock: dict[str, int]) -> str:
    """A merchant with one product per sku (price 1000); its id."""
    merchant_id = f"mer_{uuid.uuid4().hex[:12]}"
    async with sessionmaker.begin() as session:
        session.add(
            Merchant(
                id=merchant_id,
                name="Shop",
                email="shop@example.com",
                webhook_secret_sealed="x",
            )
        )
        await session.flush()
        session.add_all(
            Product(merchant_id=merchant_id, sku=sku, name=sku, price=1000, currency="USD", stock=n)
            for sku, n in stock.items()
        )
    return merchant_id


async def make_order(
    sessionmaker: async_sessionmaker[AsyncSession],
    merchant_id: str,
    lines: Sequence[tuple[str, int]],
) -> str:
    order_id = f"ord_{uuid.uuid4().hex[:12]}"
    async with sessionmaker.begin() as session:
        session.add(
            Order(
                id=order_id,
                merchant_id=merchant_id,
                source="storefront",
                status="pending",
                customer_email="ada@example.com",
                customer_name="Ada",
                shipping_address={},
                currency="USD",
                total=sum(q * 1000 for _, q in lines),
            )
        )
        await session.flush()
        session.add_all(
            OrderItem(order_id=order_id, sku=sku, quantity=q, unit_price=1000) for sku, q in lines
        )
    return order_id


async def stock_of(
    sessionmaker: async_sessionmaker[AsyncSession], merchant_id: str, sku: str
) -> tuple[int, int]:
    from db.catalog import get_product

    async with sessionmaker() as session:
        product = await get_product(session, merchant_id, sku)
        assert product is not None
        return product.stock, product.reserved
