"""Ops: trigger the payout-release schedule now, and reconcile the books with Stripe."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import APIRouter
from temporalio.client import ScheduleOverlapPolicy
from temporalio.service import RPCError

from activities.reconciliation import Reconciler
from api.deps import OpsKey, ResourcesDep, TemporalDep
from api.payout_schemas import PayoutRunTriggered
from api.problems import Problem, problem_responses
from api.resources import TemporalUnavailable
from fulfil.ids import PAYOUT_RELEASE_SCHEDULE
from fulfil.messages.payouts import ReconciliationReport

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/ops",
    tags=["ops"],
    responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
)


@router.post(
    "/payout-runs",
    status_code=HTTPStatus.ACCEPTED,
    summary="Run the payout-release schedule now (the same run the schedule starts)",
    responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
)
async def trigger_payout_run(_ops: OpsKey, temporal: TemporalDep) -> PayoutRunTriggered:
    try:
        client = await temporal()
        await client.get_schedule_handle(PAYOUT_RELEASE_SCHEDULE).trigger(
            overlap=ScheduleOverlapPolicy.SKIP
        )
    except (TemporalUnavailable, RPCError) as err:
        log.warning("payout schedule not triggered", extra={"error": str(err)})
        raise Problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "The payout-release schedule cannot be reached (is the worker up?); retry shortly.",
            slug="schedule-unavailable",
            headers={"Retry-After": "5"},
        ) from err
    return PayoutRunTriggered(schedule=PAYOUT_RELEASE_SCHEDULE)


@router.get(
    "/reconciliation",
    summary="Debits equal credits per order, per payout and overall; released payouts match "
    "Stripe's transfers",
    responses=problem_responses(HTTPStatus.BAD_GATEWAY),
)
async def reconcile(_ops: OpsKey, resources: ResourcesDep) -> ReconciliationReport:
    try:
        return await Reconciler(resources.sessionmaker, resources.stripe).reconcile()
    except Exception as err:  # Stripe unreachable: say so rather than a bare 500
        if type(err).__module__.startswith("stripe"):
            raise Problem(
                HTTPStatus.BAD_GATEWAY, f"Stripe could not be read: {err}", slug="provider-error"
            ) from err
        raise
