"""PayoutRelease: the ``payout-release`` schedule's run. Finds the releasable payouts and asks
each ``EscrowPayout`` to release itself.

The transfer is the payout's own step, so a dispute can never race a run, a seller whose
transfer keeps failing holds up nobody else, and two runs that overlap (the schedule
skips overlaps anyway) cannot pay twice: a payout transfers once per release, with its
idempotency key ``payout:{id}:transfer``. Triggered by the schedule every
``PAYOUT_RUN_INTERVAL_SECONDS``, by ``POST /api/v1/ops/payout-runs`` or in the UI.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payouts import PayoutActivities
    from fulfil.ids import payout_workflow_id
    from fulfil.messages.payouts import (
        PayoutReleaseInput,
        ReleasePayout,
        ReleaseRunResult,
    )
    from workflows import policies
    from workflows.escrow_payout import EscrowPayout

# Signals in flight at once.
FAN_OUT = 50


@workflow.defn
class PayoutRelease:
    @workflow.run
    async def run(self, inp: PayoutReleaseInput) -> ReleaseRunResult:
        workflow.set_current_details("finding releasable payouts")
        found = await workflow.execute_activity_method(
            PayoutActivities.releasable_payouts,
            inp,
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
            summary="releasable payouts",
        )
        workflow.set_current_details(f"asking {len(found.payout_ids)} payouts to release")
        limit = asyncio.Semaphore(FAN_OUT)
        request = ReleasePayout(run_id=workflow.info().run_id)

        async def ask(payout_id: str) -> bool:
            async with limit:
                handle = workflow.get_external_workflow_handle(payout_workflow_id(payout_id))
                try:
                    await handle.signal(EscrowPayout.release, request)
                except ApplicationError:
                    workflow.logger.warning(
                        "payout workflow not found", extra={"payout_id": payout_id}
                    )
                    return False
                return True

        asked = await asyncio.gather(*(ask(payout_id) for payout_id in found.payout_ids))
        workflow.set_current_details(f"asked {sum(asked)} payouts to release")
        return ReleaseRunResult(signalled=sum(asked))
