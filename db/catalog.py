"""Catalogue repository: products and discounts of one merchant."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Discount, Product


async def create_product(
    session: AsyncSession,
    *,
    merchant_id: str,
    sku: str,
    name: str,
    price: int,
    currency: str,
    stock: int,
    weight_grams: int | None,
) -> Product | None:
    """The new product, or ``None`` when the merchant already has this sku."""
    return await session.scalar(
        insert(Product)
        .values(
            merchant_id=merchant_id,
            sku=sku,
            name=name,
            price=price,
            currency=currency,
            stock=stock,
            reserved=0,
            weight_grams=weight_grams,
        )
        .on_conflict_do_nothing(index_elements=["merchant_id", "sku"])
        .returning(Product)
    )


async def get_product(
    session: AsyncSession, merchant_id: str, sku: str, *, for_update: bool = False
) -> Product | None:
    """``for_update`` locks the row, so a reservation cannot slip in before a stock change."""
    query = select(Product).where(Product.merchant_id == merchant_id, Product.sku == sku)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query.execution_options(populate_existing=True))


async def get_products_by_sku(
    session: AsyncSession, merchant_id: str, skus: Iterable[str]
) -> dict[str, Product]:
    rows = await session.scalars(
        select(Product).where(Product.merchant_id == merchant_id, Product.sku.in_(list(skus)))
    )
    return {product.sku: product for product in rows}


async def update_product(
    session: AsyncSession, product: Product, *, stock: int | None, price: int | None
) -> Product:
    """Set what is given; the caller has checked ``stock >= reserved`` under the row lock."""
    if stock is not None:
        product.stock = stock
    if price is not None:
        product.price = price
    await session.flush()
    await session.refresh(product)
    return product


async def create_discount(
    session: AsyncSession,
    *,
    merchant_id: str,
    code: str,
    percent_off: int | None,
    amount_off: int | None,
    currency: str | None,
) -> Discount | None:
    """The new discount, or ``None`` when the merchant already has this code."""
    return await session.scalar(
        insert(Discount)
        .values(
            merchant_id=merchant_id,
            code=code,
            percent_off=percent_off,
            amount_off=amount_off,
            currency=currency,
        )
        .on_conflict_do_nothing(index_elements=["merchant_id", "code"])
        .returning(Discount)
    )


async def get_discount(session: AsyncSession, merchant_id: str, code: str) -> Discount | None:
    return await session.scalar(
        select(Discount).where(Discount.merchant_id == merchant_id, Discount.code == code)
    )
