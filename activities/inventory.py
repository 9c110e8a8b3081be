"""Stock activities: reserve an order's units, commit them when paid, release them on undo.

Each is idempotent (:mod:`db.inventory` finds its own earlier effect), so a
retry after a worker crash neither reserves nor restocks twice.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.order_records import locked_order
from db import inventory
from fulfil import errors
from fulfil.messages.orders import OrderRef

log = logging.getLogger(__name__)


class InventoryActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def reserve_stock(self, ref: OrderRef) -> None:
        """Reserve every line atomically, or none: no oversell under any concurrency."""
        async with self._sessionmaker.begin() as session:
            order = await locked_order(session, ref.order_id)
            try:
                await inventory.reserve(session, order)
            except inventory.NotEnoughStock as short:
                raise ApplicationError(
                    str(short), short.sku, type=errors.OUT_OF_STOCK, non_retryable=True
                ) from None
        log.info("stock reserved", extra={"order_id": ref.order_id})

    @activity.defn
    async def commit_stock(self, ref: OrderRef) -> None:
        """The order is paid: reserved units leave the stock."""
        async with self._sessionmaker.begin() as session:
            await inventory.commit(session, ref.order_id)

    @activity.defn
    async def release_stock(self, ref: OrderRef) -> None:
        """Compensation: reserved units become available, committed units go back to stock."""
        async with self._sessionmaker.begin() as session:
            released = await inventory.release(session, ref.order_id)
        log.info("stock released", extra={"order_id": ref.order_id, "lines": released})
