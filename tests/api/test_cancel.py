"""Cancel answers that need no workflow (the full path runs in tests/integration)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from tests.api.conftest import MerchantActor, assert_problem, order_body


@pytest.fixture
async def order_id(merchant: MerchantActor) -> str:
    await merchant.add_product("LAMP-1", stock=3)
    r = await merchant.place(order_body(("LAMP-1", 1)))
    assert r.status_code == 202
    return str(r.json()["order_id"])


async def set_status(sessionmaker, order_id: str, status: str) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            text("UPDATE orders SET status = :s WHERE id = :id"), {"s": status, "id": order_id}
        )


@pytest.mark.parametrize("status", ["shipped", "delivered", "failed", "refunded"])
async def test_shipped_or_finished_order_is_409_without_asking_the_workflow(
    client: httpx.AsyncClient,
    merchant: MerchantActor,
    order_id: str,
    sessionmaker,
    status: str,
) -> None:
    await set_status(sessionmaker, order_id, status)
    # Temporal is unreachable here: a 409 (not a 503) shows the workflow was not asked.
    r = await client.post(f"/api/v1/orders/{order_id}/cancel", headers=merchant.auth)
    assert_problem(r, 409)


async def test_temporal_down_is_503(
    client: httpx.AsyncClient, merchant: MerchantActor, order_id: str
) -> None:
    r = await client.post(f"/api/v1/orders/{order_id}/cancel", headers=merchant.auth)
    body = assert_problem(r, 503)
    assert r.headers["retry-after"]
    assert "127.0.0.1" not in body["detail"]
