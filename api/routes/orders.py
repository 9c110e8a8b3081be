"""Orders: storefront placement, reads from PostgreSQL, cancellation through the workflow."""

from __future__ import annotations

import logging
from datetime import timedelta
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    CurrentCaller,
    DispatchDep,
    IdempotencyKey,
    OwnerMerchant,
    ReadSessionDep,
    ResourcesDep,
    SessionDep,
    SettingsDep,
    StartingAfter,
    TemporalDep,
)
from api.placement import place_order
from api.problems import Problem, conflict, not_found, problem_responses, unknown_cursor
from api.resources import TemporalUnavailable
from api.schemas import (
    OrderAccepted,
    OrderCreate,
    OrderLinks,
    OrderList,
    json_response,
)
from db import inbox, orders
from fulfil import errors
from fulfil.enums import SHIPPED_OR_LATER, TERMINAL_ORDER_STATUSES, OrderSource, OrderStatus
from fulfil.ids import order_workflow_id
from fulfil.messages.orders import CancelOrder, OrderProgress
from fulfil.views import OrderPublic
from workflows.order_placement import OrderPlacement

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/orders",
    tags=["orders"],
    responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
)

OrderIdPath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
CANCEL_TIMEOUT = timedelta(seconds=30)


def _order_link(order_id: str) -> str:
    return f"{router.prefix}/{order_id}"


@router.post(
    "",
    status_code=HTTPStatus.ACCEPTED,
    summary="Place a storefront order",
    description=(
        "Validates the order against the catalogue, stores it and answers at once; the "
        "`OrderPlacement` workflow then reserves stock, charges and ships. The same "
        "`Idempotency-Key` with the same body returns the same order; with a different "
        "body, 422. Lines with the same sku are merged."
    ),
    responses=problem_responses(
        HTTPStatus.BAD_REQUEST, HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY
    ),
)
async def create_order(
    body: OrderCreate,
    merchant: OwnerMerchant,
    idempotency_key: IdempotencyKey,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
    request: Request,
) -> OrderAccepted:
    placed = await place_order(
        session,
        merchant=merchant,
        idempotency_key=idempotency_key,
        body=body,
        settings=settings,
    )
    request.state.order_id = placed.order_id
    if placed.outbox_ids:
        # Runs after the commit (SessionDep is function-scoped) and returns at once.
        background.add_task(resources.dispatch.schedule, placed.outbox_ids)
    if placed.created:
        resources.metrics.orders_created.labels(OrderSource.STOREFRONT.value).inc()
        log.info("order accepted", extra={"order_id": placed.order_id, "merchant_id": merchant.id})
    return OrderAccepted(
        order_id=placed.order_id,
        status=placed.status,
        links=OrderLinks(self_=_order_link(placed.order_id)),
    )


@router.get(
    "",
    summary="The merchant's orders, newest first",
    response_model=OrderList,
    responses=problem_responses(HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def list_orders(
    caller: CurrentCaller,
    session: ReadSessionDep,
    status: Annotated[OrderStatus | None, Query()] = None,
    source: Annotated[OrderSource | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: StartingAfter = None,
) -> Response:
    after = None
    if starting_after is not None:
        after = await orders.get_order_cursor(session, starting_after, caller.merchant_id)
        if after is None:
            raise unknown_cursor("order", starting_after)
    page, has_more = await orders.list_orders_public(
        session,
        merchant_id=caller.merchant_id,
        status=status,
        source=source,
        after=after,
        limit=limit,
    )
    return json_response(OrderList(data=page, has_more=has_more))


@router.get(
    "/{order_id}",
    summary="An order with its items, totals, payment, shipment and events",
    response_model=OrderPublic,
    responses=problem_responses(HTTPStatus.NOT_FOUND),
)
async def get_order(
    order_id: OrderIdPath, caller: CurrentCaller, session: ReadSessionDep
) -> Response:
    order = await orders.get_order_public(session, order_id, caller.merchant_id)
    if order is None:
        raise not_found(f"Order {order_id!r}")
    return json_response(order)


@router.post(
    "/{order_id}/cancel",
    summary="Cancel an order that has not shipped",
    description=(
        "Asks the order's workflow to cancel (a validated update) and waits until it has "
        "refunded the payment, released the stock and voided the label as needed. "
        "Cancelling a cancelled order answers 200; a shipped or finished order, 409."
    ),
    responses=problem_responses(
        HTTPStatus.NOT_FOUND,
        HTTPStatus.CONFLICT,
        HTTPStatus.SERVICE_UNAVAILABLE,
        HTTPStatus.GATEWAY_TIMEOUT,
    ),
)
async def cancel_order(
    order_id: OrderIdPath,
    caller: CurrentCaller,
    session: SessionDep,
    temporal: TemporalDep,
    dispatch: DispatchDep,
) -> OrderPublic:
    order = await orders.get_order(session, order_id, caller.merchant_id)
    if order is None:
        raise not_found(f"Order {order_id!r}")
    status = OrderStatus(order.status)
    if status == OrderStatus.CANCELLED:
        return await _read_back(session, order_id, caller.merchant_id)
    if status in SHIPPED_OR_LATER:
        raise conflict("order-not-cancellable", f"Order {order_id} has already {status.value}.")
    if status in TERMINAL_ORDER_STATUSES:
        raise conflict("order-not-cancellable", f"Order {order_id} is {status.value}.")
    if order.source == OrderSource.TIKTOK.value:
        raise conflict(
            "order-not-cancellable",
            f"Order {order_id} came from TikTok Shop: it is cancelled there, and the engine "
            "follows (the label is voided if the parcel has not left).",
        )

    workflow_id = order_workflow_id(order_id)
    try:
        client = await temporal()
        try:
            await _execute_cancel(client, workflow_id)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            # Its start may still be in the outbox (Temporal was down at placement).
            pending = await inbox.pending_outbox_ids(session, workflow_id)
            if not pending:
                raise
            await dispatch.dispatch_now(pending)
            await _execute_cancel(client, workflow_id)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == errors.ORDER_NOT_CANCELLABLE:
            raise conflict("order-not-cancellable", cause.message) from err
        raise
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        raise Problem(
            HTTPStatus.GATEWAY_TIMEOUT,
            "The cancellation did not finish in time; read the order to see its outcome.",
            slug="cancel-timeout",
        ) from err
    except (TemporalUnavailable, RPCError) as err:
        log.warning(
            "cancel could not reach the workflow",
            extra={"order_id": order_id, "workflow_id": workflow_id, "error": str(err)},
        )
        raise Problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "The order workflow cannot be reached right now; retry shortly.",
            slug="workflow-unavailable",
            headers={"Retry-After": "5"},
        ) from err
    return await _read_back(session, order_id, caller.merchant_id)


async def _execute_cancel(client: Client, workflow_id: str) -> OrderProgress:
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    progress: OrderProgress = await handle.execute_update(
        OrderPlacement.cancel, CancelOrder(), rpc_timeout=CANCEL_TIMEOUT
    )
    return progress


async def _read_back(session: AsyncSession, order_id: str, merchant_id: str | None) -> OrderPublic:
    order = await orders.get_order_public(session, order_id, merchant_id)
    if order is None:
        raise not_found(f"Order {order_id!r}")
    return order
