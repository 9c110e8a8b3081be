"""Cancellation through the workflow's validated update (a stand-in Temporal client)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from fulfil.models import CancelOrder, OrderProgress, OrderStatus
from tests.api.conftest import FakeClient, MerchantActor, assert_problem, order_body, rows


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


def workflow_records_cancellation(sessionmaker) -> Any:
    async def on_update(workflow_id: str) -> OrderProgress:
        order_id = workflow_id.removeprefix("order-")
        await set_status(sessionmaker, order_id, "cancelled")
        async with sessionmaker.begin() as session:
            await session.execute(
                text(
                    "INSERT INTO order_events (order_id, type, status, detail, dedupe_key) "
                    "VALUES (:id, 'order.cancelled', 'cancelled', 'by merchant', :k)"
                ),
                {"id": order_id, "k": f"{order_id}:cancelled"},
            )
        return OrderProgress(order_id=order_id, status=OrderStatus.CANCELLED, step="cancelled")

    return on_update


async def test_cancel_calls_the_update_and_reads_back_the_order(
    fake_client: httpx.AsyncClient,
    fake: FakeClient,
    merchant: MerchantActor,
    order_id: str,
    sessionmaker,
) -> None:
    from workflows.order_placement import OrderPlacement

    fake.on_update = workflow_records_cancellation(sessionmaker)
    r = await fake_client.post(f"/api/v1/orders/{order_id}/cancel", headers=merchant.auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert [e["type"] for e in r.json()["events"]] == ["order.created", "order.cancelled"]
    [(workflow_id, update, arg)] = fake.updates
    assert workflow_id == f"order-{order_id}"
    assert update == OrderPlacement.cancel
    assert isinstance(arg, CancelOrder)

    # Cancelling again is idempotent and needs no workflow.
    r = await fake_client.post(f"/api/v1/orders/{order_id}/cancel", headers=merchant.auth)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert len(fake.updates) == 1


@pytest.mark.parametrize("status", ["shipped", "delivered", "failed", "refunded"])
async def test_shipped_or_finished_order_is_409_without_asking_the_workflow(
    fake_client: httpx.AsyncClient,
    fake: FakeClient,
    merchant: MerchantActor,
    order_id: str,
    sessionmaker,
    status: str,
) -> None:
    await set_status(sessionmaker, order_id, status)
    r = await fake_client.post(f"/api/v1/orders/{order_id}/cancel", headers=merchant.auth)
    assert_problem(r, 409)
    assert fake.updates == []


async def test_validator_rejection_is_409(
    fake_client: httpx.AsyncClient, fake: FakeClient, merchant: MerchantActor, order_id: str
) -> None:
    async def reject(workflow_id: str) -> None:
        raise WorkflowUpdateFailedError(
            ApplicationError(
                "order is shipped and can no longer be cancelled", type="OrderNotCancellable"
            )
        )

    fake.on_update = reject
    r = await fake_client.post(f"/api/v1/orders/{order_id}/cancel", headers=merchant.auth)
    body = assert_problem(r, 409)
    assert "can no longer be cancelled" in body["detail"]


async def test_workflow_not_started_yet_dispatches_the_outbox_then_retries(
    fake_client: httpx.AsyncClient,
    fake: FakeClient,
    merchant: MerchantActor,
    order_id: str,
    sessionmaker,
) -> None:
    records = workflow_records_cancellation(sessionmaker)

    async def not_found_until_started(workflow_id: str) -> OrderProgress:
        if workflow_id not in fake.starts:
            raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
        result: OrderProgress = await records(workflow_id)
        return result

    fake.on_update = not_found_until_started
    r = await fake_client.post(f"/api/v1/orders/{order_id}/cancel", headers=merchant.auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert fake.starts == [f"order-{order_id}"]
    assert len(fake.updates) == 2
    [outbox] = await rows(
        sessionmaker, "SELECT * FROM outbox WHERE workflow_id = :w", w=f"order-{order_id}"
    )
    assert outbox["dispatched_at"] is not None


async def test_temporal_down_is_503(
    client: httpx.AsyncClient, merchant: MerchantActor, order_id: str
) -> None:
    r = await client.post(f"/api/v1/orders/{order_id}/cancel", headers=merchant.auth)
    body = assert_problem(r, 503)
    assert r.headers["retry-after"]
    assert "127.0.0.1" not in body["detail"]
