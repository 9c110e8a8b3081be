"""Stock: reserve an order's units atomically, commit them when paid, give them back when not.

Reservations are rows (one per order and product) whose ``state`` moves
``reserved → committed`` or ``reserved → released`` / ``committed → restocked``;
each step finds its own earlier effect, so repeating it (an activity retry)
changes nothing. Products are locked in sku order, so two orders never deadlock.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Order, Product, StockReservation

RESERVED, COMMITTED, RELEASED, RESTOCKED = "reserved", "committed", "released", "restocked"


class NotEnoughStock(Exception):
    def __init__(self, sku: str) -> None:
        super().__init__(f"not enough stock for {sku}")
        self.sku = sku


async def reserve(session: AsyncSession, order: Order) -> bool:
    """Reserve every line of ``order`` (locked by the caller), or none.

    False when the order was reserved before; raises :class:`NotEnoughStock`
    (and the caller's transaction rolls back the lines already taken).
    """
    existing = await session.scalar(
        select(StockReservation.id).where(StockReservation.order_id == order.id).limit(1)
    )
    if existing is not None:
        return False
    quantities: dict[str, int] = {}
    for item in order.items:
        quantities[item.sku] = quantities.get(item.sku, 0) + item.quantity
    for sku in sorted(quantities):
        qty = quantities[sku]
        product_id = await session.scalar(
            update(Product)
            .where(
                Product.merchant_id == order.merchant_id,
                Product.sku == sku,
                Product.stock - Product.reserved >= qty,
            )
            .values(reserved=Product.reserved + qty)
            .returning(Product.id)
        )
        if product_id is None:
            raise NotEnoughStock(sku)
        session.add(
            StockReservation(order_id=order.id, product_id=product_id, quantity=qty, state=RESERVED)
        )
    await session.flush()
    return True


async def _reservations(
    session: AsyncSession, order_id: str, states: tuple[str, ...]
) -> list[StockReservation]:
    rows = await session.scalars(
        select(StockReservation)
        .where(StockReservation.order_id == order_id, StockReservation.state.in_(states))
        .order_by(StockReservation.product_id)
        .with_for_update()
    )
    return list(rows)


async def commit(session: AsyncSession, order_id: str) -> int:
    """The order is paid: its reserved units leave the stock. Returns the rows moved."""
    rows = await _reservations(session, order_id, (RESERVED,))
    for r in rows:
        await session.execute(
            update(Product)
            .where(Product.id == r.product_id)
            .values(stock=Product.stock - r.quantity, reserved=Product.reserved - r.quantity)
        )
        r.state = COMMITTED
    return len(rows)


async def release(session: AsyncSession, order_id: str) -> int:
    """Undo: reserved units become available again, committed units go back to stock."""
    rows = await _reservations(session, order_id, (RESERVED, COMMITTED))
    for r in rows:
        if r.state == RESERVED:
            values = {"reserved": Product.reserved - r.quantity}
            r.state = RELEASED
        else:
            values = {"stock": Product.stock + r.quantity}
            r.state = RESTOCKED
        await session.execute(update(Product).where(Product.id == r.product_id).values(values))
    return len(rows)
