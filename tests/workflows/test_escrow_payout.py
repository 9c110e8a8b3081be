"""EscrowPayout and PayoutRelease on the time-skipping server: a 3-day hold, disputes from
ops and from Stripe, releases that pay exactly once. Activities are fakes (Stripe Connect in
memory); timers of days pass in milliseconds.

With ``RECORD_HISTORIES=1`` each test keeps its histories under ``tests/histories/``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from fulfil.enums import DisputeOutcome, PayoutSource, PayoutStatus
from fulfil.messages.payouts import (
    CheckoutCharge,
    EscrowPayoutInput,
    OpenDispute,
    PayoutConfig,
    PayoutReleaseInput,
    PayoutView,
    ReleasePayout,
    ResolveDispute,
    StripeDisputeEvent,
)
from tests.workflows.fakes import HISTORIES, FakePayouts, Fakes
from tests.workflows.waiting import until
from workflows.escrow_payout import EscrowPayout
from workflows.payout_release import PayoutRelease

DAY = timedelta(days=1)
HOLD = 3 * DAY
AMOUNT = 10_000  # fee 1,500, seller 8,500


def payout_input(payout_id: str, *, checkout: bool = True) -> EscrowPayoutInput:
    return EscrowPayoutInput(
        payout_id=payout_id,
        merchant_id="mer_seller",
        stripe_account="acct_seller",
        source=PayoutSource.CHECKOUT if checkout else PayoutSource.ORDER,
        amount=AMOUNT,
        currency="USD",
        config=PayoutConfig(
            hold_seconds=int(HOLD.total_seconds()), fee_bps=1500, dispute_window_seconds=30 * 86400
        ),
        order_id=None if checkout else f"ord_{payout_id}",
        payment_intent_id=None if checkout else f"pi_{payout_id}",
        charge_id=None if checkout else f"ch_{payout_id}",
        checkout=(
            CheckoutCharge(
                checkout_id=f"chk_{payout_id}",
                payment_method="pm_card_visa",
                buyer_email="buyer@example.com",
                listing="a candle",
            )
            if checkout
            else None
        ),
    )


class Harness:
    def __init__(self, env: WorkflowEnvironment, fakes: Fakes, task_queue: str) -> None:
        self.env = env
        self.fakes = fakes
        self.task_queue = task_queue
        self.payout_id = f"pay_{uuid.uuid4().hex[:10]}"
        self.handle: WorkflowHandle[Any, Any] | None = None
        self.last_release: WorkflowHandle[Any, Any] | None = None

    @property
    def client(self) -> Client:
        return self.env.client

    async def start(self, **kwargs: Any) -> WorkflowHandle[Any, Any]:
        self.handle = await self.client.start_workflow(
            EscrowPayout.run,
            payout_input(self.payout_id, **kwargs),
            id=f"payout-{self.payout_id}",
            task_queue=self.task_queue,
        )
        await self.until(lambda view: view.status == PayoutStatus.HOLDING)
        return self.handle

    async def view(self) -> PayoutView:
        assert self.handle is not None
        view: PayoutView = await self.handle.query(EscrowPayout.view)
        return view

    async def until(self, check: Any, what: str = "") -> PayoutView:
        view: PayoutView | None = None

        async def reached() -> bool:
            nonlocal view
            view = await self.view()
            return bool(check(view))

        await until(reached, lambda: f"{what} (last seen: {view})")
        assert view is not None
        return view

    async def run_release(self) -> int:
        """One run of the payout-release schedule; how many payouts it asked. The clock
        stands still meanwhile (waiting for the result would otherwise skip to the hold's end)."""
        with self.env.auto_time_skipping_disabled():
            run = await self.client.start_workflow(
                PayoutRelease.run,
                PayoutReleaseInput(),
                id=f"payout-release-{uuid.uuid4().hex[:8]}",
                task_queue=self.task_queue,
            )
            result = await run.result()
        self.last_release = run
        return int(result.signalled)

    @property
    def payouts(self) -> FakePayouts:
        return self.fakes.payouts

    def transfers(self) -> list[str]:
        return [t for t in self.payouts.transfers if t.startswith(self.payout_id)]

    async def record(self, name: str, release_run: str | None = None) -> None:
        """Keep the payout's history (and, named ``release_run``, the last release run's)."""
        if not os.environ.get("RECORD_HISTORIES") or self.handle is None:
            return
        runs = [("escrow_payout", name, self.handle)]
        if release_run and self.last_release is not None:
            runs.append(("payout_release", release_run, self.last_release))
        for folder_name, file_name, handle in runs:
            folder = HISTORIES / folder_name
            folder.mkdir(parents=True, exist_ok=True)
            history = await handle.fetch_history()
            (folder / f"{file_name}.json").write_text(history.to_json())


@pytest.fixture
async def harness(ts_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    fakes = Fakes()
    task_queue = f"tq-{uuid.uuid4()}"
    async with fakes.workers(ts_env.client, task_queue, [EscrowPayout, PayoutRelease]):
        yield Harness(ts_env, fakes, task_queue)


async def test_no_dispute_pays_once_at_three_days_not_before(harness: Harness) -> None:
    await harness.start()
    assert harness.payouts.postings == ["charge", "split"]
    await harness.env.sleep(HOLD - timedelta(minutes=1))
    await harness.run_release()
    assert harness.transfers() == []
    assert (await harness.view()).status == PayoutStatus.HOLDING

    await harness.env.sleep(timedelta(minutes=2))
    await harness.until(lambda v: v.status == PayoutStatus.RELEASABLE, "releasable")
    assert await harness.run_release() == 1
    view = await harness.until(lambda v: v.status == PayoutStatus.RELEASED, "released")
    assert harness.transfers() == [f"{harness.payout_id}:1"]
    assert "transfer:8500" in harness.fakes.calls
    assert view.transfer_id == f"tr_{harness.payout_id}:1"
    assert harness.payouts.postings == ["charge", "split", "transfer:1"]
    await harness.run_release()  # a later run changes nothing
    assert len(harness.transfers()) == 1
    await harness.record("released", release_run="asked_one")


async def test_dispute_on_day_two_then_release_pays_once(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(2 * DAY)
    view = await handle.execute_update(EscrowPayout.open_dispute, OpenDispute(reason="fraud?"))
    assert view.status == PayoutStatus.DISPUTED
    await harness.env.sleep(2 * DAY)  # the hold passes while disputed
    await harness.run_release()
    assert harness.transfers() == []
    view = await handle.execute_update(
        EscrowPayout.resolve, ResolveDispute(outcome=DisputeOutcome.RELEASE)
    )
    assert view.status == PayoutStatus.RELEASABLE
    await harness.run_release()
    await harness.until(lambda v: v.status == PayoutStatus.RELEASED, "released")
    assert len(harness.transfers()) == 1
    await harness.record("dispute_then_release")


async def test_dispute_on_day_two_then_refund_pays_nothing(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(2 * DAY)
    await handle.execute_update(EscrowPayout.open_dispute, OpenDispute(reason="never arrived"))
    view = await handle.execute_update(
        EscrowPayout.resolve, ResolveDispute(outcome=DisputeOutcome.REFUND)
    )
    assert view.status == PayoutStatus.REFUNDED
    await harness.env.sleep(2 * DAY)
    await harness.run_release()
    assert harness.transfers() == []
    assert f"refund_payout:{AMOUNT}" in harness.fakes.calls
    assert harness.payouts.postings == ["charge", "split", "unsplit", "refund"]
    assert (await handle.result()).status == PayoutStatus.REFUNDED
    await harness.record("dispute_then_refund")


async def test_dispute_after_the_hold_but_before_the_run_pays_nothing(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(HOLD + timedelta(minutes=5))
    await harness.until(lambda v: v.status == PayoutStatus.RELEASABLE, "releasable")
    await handle.execute_update(EscrowPayout.open_dispute, OpenDispute(reason="chargeback risk"))
    # The run still finds it releasable in the read model an instant before: nothing moves.
    await handle.signal(EscrowPayout.release, ReleasePayout())
    await harness.run_release()
    await harness.env.sleep(timedelta(hours=1))
    assert harness.transfers() == []
    assert (await harness.view()).status == PayoutStatus.DISPUTED
    await harness.record("dispute_before_run", release_run="asked_none")


async def test_stripe_dispute_after_release_reverses_the_transfer(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(HOLD + timedelta(minutes=1))
    await harness.until(lambda v: v.status == PayoutStatus.RELEASABLE, "releasable")
    await harness.run_release()
    await harness.until(lambda v: v.status == PayoutStatus.RELEASED, "released")

    charge = f"ch_{harness.payout_id}"
    harness.payouts.disputes["du_forged"] = ("needs_response", "ch_someone_else")
    await handle.signal(EscrowPayout.stripe_dispute, StripeDisputeEvent(dispute_id="du_forged"))
    await handle.signal(EscrowPayout.stripe_dispute, StripeDisputeEvent(dispute_id="du_unknown"))
    harness.payouts.disputes["du_1"] = ("needs_response", charge)
    await handle.signal(EscrowPayout.stripe_dispute, StripeDisputeEvent(dispute_id="du_1"))
    view = await harness.until(lambda v: v.status == PayoutStatus.DISPUTED, "disputed")
    assert view.dispute_id == "du_1"
    assert harness.fakes.calls.count(f"reverse:tr_{harness.payout_id}:1") == 1
    assert harness.payouts.postings[-1] == "reversal:1"

    # Stripe closes it lost: the payout ends refunded, nothing left with the seller.
    harness.payouts.disputes["du_1"] = ("lost", charge)
    await handle.signal(EscrowPayout.stripe_dispute, StripeDisputeEvent(dispute_id="du_1"))
    result = await handle.result()
    assert result.status == PayoutStatus.REFUNDED
    assert harness.payouts.postings[-2:] == ["unsplit", "refund"]
    assert not [c for c in harness.fakes.calls if c.startswith("refund_payout")]
    await harness.record("dispute_after_release")


async def test_a_won_dispute_after_release_pays_again_with_a_new_key(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(HOLD + timedelta(minutes=1))
    await harness.until(lambda v: v.status == PayoutStatus.RELEASABLE, "releasable")
    await harness.run_release()
    await harness.until(lambda v: v.status == PayoutStatus.RELEASED, "released")
    charge = f"ch_{harness.payout_id}"
    harness.payouts.disputes["du_2"] = ("needs_response", charge)
    await handle.signal(EscrowPayout.stripe_dispute, StripeDisputeEvent(dispute_id="du_2"))
    await harness.until(lambda v: v.status == PayoutStatus.DISPUTED, "disputed")
    harness.payouts.disputes["du_2"] = ("won", charge)
    await handle.signal(EscrowPayout.stripe_dispute, StripeDisputeEvent(dispute_id="du_2"))
    await harness.until(lambda v: v.status == PayoutStatus.RELEASABLE, "releasable again")
    await harness.run_release()
    await harness.until(lambda v: v.status == PayoutStatus.RELEASED, "released again")
    assert harness.transfers() == [f"{harness.payout_id}:1", f"{harness.payout_id}:2"]
    assert harness.payouts.postings[-3:] == ["transfer:1", "reversal:1", "transfer:2"]
    await harness.record("dispute_won_after_release")


async def test_a_worker_restart_during_the_hold_keeps_the_timer(
    ts_env: WorkflowEnvironment,
) -> None:
    fakes = Fakes()
    task_queue = f"tq-{uuid.uuid4()}"
    harness = Harness(ts_env, fakes, task_queue)
    workflows = [EscrowPayout, PayoutRelease]
    async with fakes.workers(ts_env.client, task_queue, workflows, cache=False):
        await harness.start()
        await ts_env.sleep(DAY)
    # No worker for a day of the hold: the timer is the server's, not the worker's.
    await ts_env.sleep(DAY)
    async with fakes.workers(ts_env.client, task_queue, workflows, cache=False):
        assert (await harness.view()).status == PayoutStatus.HOLDING
        await ts_env.sleep(DAY + timedelta(minutes=1))
        await harness.until(lambda v: v.status == PayoutStatus.RELEASABLE, "releasable")
        await harness.run_release()
        await harness.until(lambda v: v.status == PayoutStatus.RELEASED, "released")
    assert len(harness.transfers()) == 1


async def test_overlapping_release_runs_pay_once(harness: Harness) -> None:
    await harness.start()
    await harness.env.sleep(HOLD + timedelta(minutes=1))
    await harness.until(lambda v: v.status == PayoutStatus.RELEASABLE, "releasable")
    asked = await asyncio.gather(*(harness.run_release() for _ in range(3)))
    assert sum(asked) >= 1
    await harness.until(lambda v: v.status == PayoutStatus.RELEASED, "released")
    await harness.run_release()
    assert harness.transfers() == [f"{harness.payout_id}:1"]
    assert harness.fakes.calls.count("transfer:8500") == 1
    await harness.record("overlapping_runs")


async def test_a_restricted_seller_is_retried_until_stripe_takes_it(harness: Harness) -> None:
    harness.payouts.transfer_refusals = 3
    await harness.start()
    await harness.env.sleep(HOLD + timedelta(minutes=1))
    await harness.until(lambda v: v.status == PayoutStatus.RELEASABLE, "releasable")
    await harness.run_release()
    await harness.until(lambda v: "transferring" in v.step, "transferring")
    await harness.env.sleep(timedelta(minutes=10))  # 30 s, 60 s, 120 s of backoff
    await harness.until(lambda v: v.status == PayoutStatus.RELEASED, "released after retries")
    assert len(harness.transfers()) == 1
    await harness.record("transfer_retried")


async def test_a_declined_checkout_pays_nothing(harness: Harness) -> None:
    harness.payouts.decline = True
    handle = await harness.client.start_workflow(
        EscrowPayout.run,
        payout_input(harness.payout_id),
        id=f"payout-{harness.payout_id}",
        task_queue=harness.task_queue,
    )
    harness.handle = handle
    result = await handle.result()
    assert result.status == PayoutStatus.FAILED
    assert harness.payouts.postings == []
    await harness.record("declined")


async def test_an_order_refunded_before_release_cancels_its_payout(harness: Harness) -> None:
    from fulfil.messages.payouts import ChargeRefunded

    handle = await harness.start(checkout=False)
    assert harness.payouts.postings == ["split"]  # the order posted its own charge
    await handle.signal(EscrowPayout.charge_refunded, ChargeRefunded(refund_id="re_1"))
    result = await handle.result()
    assert result.status == PayoutStatus.REFUNDED
    assert harness.payouts.postings == ["split", "unsplit"]  # the order posts its refund
    await harness.env.sleep(HOLD * 2)
    assert harness.transfers() == []
    await harness.record("order_refunded")


async def test_ops_refund_of_a_sold_order_marks_the_order_refunded(harness: Harness) -> None:
    handle = await harness.start(checkout=False)
    await handle.execute_update(EscrowPayout.open_dispute, OpenDispute(reason="broken on arrival"))
    await handle.execute_update(EscrowPayout.resolve, ResolveDispute(outcome=DisputeOutcome.REFUND))
    assert (await handle.result()).status == PayoutStatus.REFUNDED
    assert "record_order_refunded" in harness.fakes.calls
    assert harness.fakes.statuses[-1] == "order.refunded"
    # Announced like any status change: the customer's email and the merchant's webhook.
    assert harness.fakes.emails[-1] == "refunded"
    assert harness.fakes.journal.webhooks[-1] == len(harness.fakes.statuses)
    await harness.record("order_payout_refunded")
