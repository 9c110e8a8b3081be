"""Escrowed payouts: read from PostgreSQL; disputes and their resolution through the payout's
workflow (validated updates), so a dispute and a release can never race."""

from __future__ import annotations

import logging
from datetime import timedelta
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api.deps import Caller, CurrentCaller, OpsKey, SessionDep, StartingAfter, TemporalDep
from api.payout_schemas import DisputeCreate, DisputeResolve, PayoutList, PayoutPublic
from api.problems import (
    Problem,
    conflict,
    forbidden,
    not_found,
    problem_responses,
    unknown_cursor,
)
from api.resources import TemporalUnavailable
from db import payouts
from db.models import Payout
from fulfil.enums import DisputeOutcome, PayoutStatus
from fulfil.ids import payout_workflow_id
from fulfil.messages.payouts import OpenDispute, ResolveDispute
from workflows.escrow_payout import PAYOUT_NOT_DISPUTABLE, PAYOUT_NOT_DISPUTED, EscrowPayout

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/payouts",
    tags=["payouts"],
    responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
)

PayoutIdPath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
UPDATE_TIMEOUT = timedelta(seconds=30)


def payout_public(payout: Payout) -> PayoutPublic:
    return PayoutPublic.model_validate(
        {
            "payout_id": payout.id,
            "status": payout.status,
            "amount": payout.amount,
            "platform_fee": payout.platform_fee,
            "seller_amount": payout.seller_amount,
            "currency": payout.currency,
            "hold_until": payout.hold_until,
            "transfer_id": payout.transfer_id,
            "source": payout.source,
            "order_id": payout.order_id,
            "checkout_id": payout.checkout_id,
            "payment_intent_id": payout.payment_intent_id,
            "dispute_id": payout.dispute_id,
            "transfer_error": payout.transfer_error,
            "detail": payout.detail,
            "created_at": payout.created_at,
            "released_at": payout.released_at,
        }
    )


async def payout_caller(caller: CurrentCaller) -> Caller:
    if caller.role == "staff":
        raise forbidden("Payouts need an owner key or the ops key.")
    return caller


# Owner keys (their merchant's payouts) and ops (all); staff keys never touch payouts.
PayoutCaller = Annotated[Caller, Depends(payout_caller)]


@router.get(
    "",
    summary="Payouts, newest first (a merchant's own; ops: all)",
    responses=problem_responses(HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def list_payouts(
    caller: PayoutCaller,
    session: SessionDep,
    status: Annotated[PayoutStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: StartingAfter = None,
) -> PayoutList:
    after = None
    if starting_after is not None:
        after = await payouts.cursor(session, starting_after, caller.merchant_id)
        if after is None:
            raise unknown_cursor("payout", starting_after)
    page, has_more = await payouts.list_payouts(
        session, merchant_id=caller.merchant_id, status=status, after=after, limit=limit
    )
    return PayoutList(data=[payout_public(p) for p in page], has_more=has_more)


@router.get(
    "/{payout_id}",
    summary="A payout: amount, fee, seller's share, hold and transfer",
    responses=problem_responses(HTTPStatus.NOT_FOUND),
)
async def get_payout(
    payout_id: PayoutIdPath, caller: PayoutCaller, session: SessionDep
) -> PayoutPublic:
    return payout_public(await _payout(session, payout_id, caller.merchant_id))


async def _payout(session: AsyncSession, payout_id: str, merchant_id: str | None) -> Payout:
    payout = await payouts.get_payout(session, payout_id, merchant_id)
    if payout is None:
        raise not_found(f"Payout {payout_id!r}")
    return payout


@router.post(
    "/{payout_id}/dispute",
    summary="Open a dispute: the payout is frozen (no transfer) until it is resolved",
    description="The merchant that owns it or ops. After release the transfer is reversed.",
    responses=problem_responses(
        HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, HTTPStatus.SERVICE_UNAVAILABLE
    ),
)
async def dispute_payout(
    payout_id: PayoutIdPath,
    body: DisputeCreate,
    caller: PayoutCaller,
    session: SessionDep,
    temporal: TemporalDep,
) -> PayoutPublic:
    await _payout(session, payout_id, caller.merchant_id)
    opened_by = "ops" if caller.is_ops else f"merchant {caller.merchant_id}"
    await _update(
        temporal,
        payout_id,
        EscrowPayout.open_dispute,
        OpenDispute(reason=body.reason, opened_by=opened_by),
    )
    return payout_public(await _payout(session, payout_id, caller.merchant_id))


@router.post(
    "/{payout_id}/resolve",
    summary="Resolve a dispute (ops): release (held or releasable again) or refund the buyer",
    responses=problem_responses(
        HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, HTTPStatus.SERVICE_UNAVAILABLE
    ),
)
async def resolve_payout(
    payout_id: PayoutIdPath,
    body: DisputeResolve,
    _ops: OpsKey,
    session: SessionDep,
    temporal: TemporalDep,
) -> PayoutPublic:
    await _payout(session, payout_id, None)
    await _update(
        temporal,
        payout_id,
        EscrowPayout.resolve,
        ResolveDispute(outcome=DisputeOutcome(body.outcome)),
    )
    return payout_public(await _payout(session, payout_id, None))


async def _update(temporal: TemporalDep, payout_id: str, update: Any, arg: Any) -> None:
    try:
        client = await temporal()
        handle = client.get_workflow_handle(payout_workflow_id(payout_id))
        await handle.execute_update(update, arg, rpc_timeout=UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type in (
            PAYOUT_NOT_DISPUTABLE,
            PAYOUT_NOT_DISPUTED,
        ):
            raise conflict("payout-state", cause.message) from err
        raise
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        raise Problem(
            HTTPStatus.GATEWAY_TIMEOUT,
            "The payout did not answer in time; read it to see the outcome.",
            slug="payout-timeout",
        ) from err
    except (TemporalUnavailable, RPCError) as err:
        log.warning(
            "payout workflow unreachable", extra={"payout_id": payout_id, "error": str(err)}
        )
        raise Problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "The payout's workflow cannot be reached right now; retry shortly.",
            slug="workflow-unavailable",
            headers={"Retry-After": "5"},
        ) from err
