"""EscrowPayout: a Connect seller's share of a sale, held in escrow, then released once.

    charge (checkouts) → post charge and split (15 % fee) → hold (durable timer)
      → releasable → [PayoutRelease's signal] → one transfer → released
      → watch for disputes for the dispute window, then end.

A dispute (an ops or merchant update, or Stripe's webhook re-verified with
Stripe) freezes the payout at any point: no transfer is made while it is open.
Ops resolve it (``release`` → held or releasable again; ``refund`` → the buyer
is refunded, or the Stripe dispute conceded) or Stripe closes it (``won`` →
as release, ``lost`` → refunded). A dispute after release reverses the transfer
first. A refund of the order before release ends the payout ``refunded``.

The payout's own workflow decides every transfer, so a dispute arriving as a
release run starts can never race it. Workflow id: ``payout-{payout_id}``.

This module decides what happens when (the hold, the events, disputes); the
activities each step runs and the records it keeps are in its base class,
``PayoutSteps`` (``workflows/payout_steps.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payouts import PayoutActivities
    from fulfil.enums import (
        PAYOUT_CLOSED_STATUSES,
        DisputeOutcome,
        PayoutStatus,
    )
    from fulfil.messages.payouts import (
        ChargeRefunded,
        DisputeCheck,
        EscrowPayoutInput,
        OpenDispute,
        PayoutView,
        ReleasePayout,
        ResolveDispute,
        StripeDisputeEvent,
    )
    from fulfil.money import split_fee
    from workflows import policies
    from workflows.payout_steps import PayoutSteps

# Stripe dispute statuses: still open, or how it ended.
OPEN_DISPUTE = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review"}
)
CLOSED_DISPUTE = {"won": DisputeOutcome.WON, "lost": DisputeOutcome.LOST}


@workflow.defn
class EscrowPayout(PayoutSteps):
    def __init__(self) -> None:
        super().__init__()
        # What arrived and is not handled yet, in order.
        self._inbox: list[Any] = []
        self._handled = 0  # how many inbox items the run has acted on
        self._release_asked = False

    # --- the run -----------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: EscrowPayoutInput) -> PayoutView:
        self._inp = inp
        self._payment_intent_id, self._charge_id = inp.payment_intent_id, inp.charge_id
        self._fee, _ = split_fee(inp.amount, inp.config.fee_bps)
        await self._db(PayoutActivities.open_payout, inp, summary="open the payout")
        if inp.checkout is not None and not await self._charge_checkout(inp):
            return self.view()
        await self._post("split", inp.amount, self._fee, "platform fee and seller's share")
        self._hold_until = workflow.now() + timedelta(seconds=inp.config.hold_seconds)
        await self._record(PayoutStatus.HOLDING, "payout.holding", hold=True)

        while self._status not in PAYOUT_CLOSED_STATUSES:
            if self._status == PayoutStatus.RELEASED:
                if not await self._watch_after_release(inp):
                    break
                continue
            await self._wait_for_something()
            await self._handle_inbox()
            if self._status == PayoutStatus.HOLDING and self._hold_over():
                await self._record(PayoutStatus.RELEASABLE, "payout.releasable")
            if self._status == PayoutStatus.RELEASABLE and self._release_asked:
                self._release_asked = False
                await self._release(inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    async def _wait_for_something(self) -> None:
        """Until an event arrives, a release is asked for a releasable payout, or the hold ends."""

        def ready() -> bool:
            if len(self._inbox) > self._handled:
                return True
            return self._status == PayoutStatus.RELEASABLE and self._release_asked

        if self._status == PayoutStatus.HOLDING and self._hold_until is not None:
            left = (self._hold_until - workflow.now()).total_seconds()
            if left <= 0:
                return
            self._set_step(f"holding until {self._hold_until:%Y-%m-%d %H:%M} UTC")
            try:
                await workflow.wait_condition(
                    ready, timeout=timedelta(seconds=left), timeout_summary="hold ends"
                )
            except TimeoutError:
                pass
            return
        if self._status == PayoutStatus.RELEASABLE:
            self._set_step("releasable: waiting for the next payout run")
        elif self._status == PayoutStatus.DISPUTED:
            self._set_step(
                f"disputed ({self._dispute_id or 'opened here'}): waiting for a decision"
            )
        await workflow.wait_condition(ready)

    def _hold_over(self) -> bool:
        return self._hold_until is not None and workflow.now() >= self._hold_until

    async def _watch_after_release(self, inp: EscrowPayoutInput) -> bool:
        """Released: a dispute may still come. False when the window closed quietly."""
        window = timedelta(seconds=inp.config.dispute_window_seconds)
        self._set_step(f"released ({self._transfer_id}): watching for disputes")
        try:
            await workflow.wait_condition(
                lambda: len(self._inbox) > self._handled,
                timeout=window,
                timeout_summary="dispute window ends",
            )
        except TimeoutError:
            return False
        await self._handle_inbox()
        return True

    # --- events --------------------------------------------------------------------------

    async def _handle_inbox(self) -> None:
        while self._handled < len(self._inbox):
            event = self._inbox[self._handled]
            if self._status not in PAYOUT_CLOSED_STATUSES:
                await self._handle(event)
            self._handled += 1

    async def _handle(self, event: Any) -> None:
        if isinstance(event, OpenDispute):
            await self._freeze(None, f"dispute opened by {event.opened_by}: {event.reason}")
        elif isinstance(event, StripeDisputeEvent):
            await self._on_stripe_dispute(event)
        elif isinstance(event, ResolveDispute):
            await self._resolve(event.outcome, "resolved by ops")
        elif isinstance(event, ChargeRefunded):
            await self._end_refunded(f"the order was refunded ({event.reason})", refunded=True)

    async def _on_stripe_dispute(self, event: StripeDisputeEvent) -> None:
        """Believed only as Stripe states it now, and only for this payout's charge."""
        state = await workflow.execute_activity_method(
            PayoutActivities.check_dispute,
            DisputeCheck(dispute_id=event.dispute_id),
            start_to_close_timeout=policies.PROVIDER_TIMEOUT,
            retry_policy=policies.PROVIDER_RETRY,
            summary=f"check dispute {event.dispute_id} with Stripe",
        )
        ours = state.charge_id is not None and state.charge_id == self._charge_id
        ours = ours or (
            state.payment_intent_id is not None
            and state.payment_intent_id == self._payment_intent_id
        )
        if not ours:
            workflow.logger.warning(
                "dispute event not confirmed by Stripe for this payout",
                extra={"payout_id": self._payout_id(), "dispute_id": event.dispute_id},
            )
            return
        if state.status in OPEN_DISPUTE and self._status != PayoutStatus.DISPUTED:
            await self._freeze(state.dispute_id, f"Stripe dispute {state.dispute_id}")
        elif state.status in CLOSED_DISPUTE and self._status == PayoutStatus.DISPUTED:
            await self._resolve(CLOSED_DISPUTE[state.status], f"Stripe closed it: {state.status}")

    async def _freeze(self, dispute_id: str | None, detail: str) -> None:
        if self._status == PayoutStatus.DISPUTED:
            return
        self._dispute_id = dispute_id or self._dispute_id
        if self._status == PayoutStatus.RELEASED:
            await self._reverse_transfer()
        self._release_asked = False
        await self._record(PayoutStatus.DISPUTED, "payout.disputed", detail=detail)

    async def _resolve(self, outcome: DisputeOutcome, detail: str) -> None:
        if self._status != PayoutStatus.DISPUTED:
            return
        if outcome in (DisputeOutcome.RELEASE, DisputeOutcome.WON):
            back = PayoutStatus.HOLDING if not self._hold_over() else PayoutStatus.RELEASABLE
            await self._record(back, f"payout.dispute_{outcome.value}", detail=detail, hold=True)
            return
        if outcome == DisputeOutcome.REFUND and self._dispute_id is not None:
            # Stripe refuses to refund a disputed charge: conceding the dispute returns the money.
            await workflow.execute_activity_method(
                PayoutActivities.accept_dispute,
                DisputeCheck(dispute_id=self._dispute_id),
                start_to_close_timeout=policies.PROVIDER_TIMEOUT,
                retry_policy=policies.PROVIDER_RETRY,
                summary=f"concede dispute {self._dispute_id}",
            )
            await self._end_refunded(f"{detail}; dispute conceded", refunded=False)
        elif outcome == DisputeOutcome.REFUND:
            await self._end_refunded(detail, refunded=False, refund_now=True)
        else:  # lost: the card network already gave the buyer the money back
            await self._end_refunded(detail, refunded=False)

    # --- signals, updates, query ---------------------------------------------------------

    @workflow.signal
    def release(self, req: ReleasePayout) -> None:
        """From PayoutRelease: transfer now if releasable (a repeat, or a run that overlaps
        another, changes nothing: only a releasable payout transfers, once)."""
        if self._status == PayoutStatus.RELEASABLE:
            self._release_asked = True

    @workflow.signal
    def stripe_dispute(self, event: StripeDisputeEvent) -> None:
        """Stripe's ``charge.dispute.*`` webhook: the payout asks Stripe what happened."""
        self._inbox.append(event)

    @workflow.signal
    def charge_refunded(self, event: ChargeRefunded) -> None:
        """From the order: its payment was refunded before release."""
        self._inbox.append(event)

    @workflow.update
    async def open_dispute(self, req: OpenDispute) -> PayoutView:
        self._inbox.append(req)
        position = len(self._inbox)
        await workflow.wait_condition(lambda: self._handled >= position)
        return self.view()

    @open_dispute.validator
    def _validate_open_dispute(self, req: OpenDispute) -> None:
        if self._status in PAYOUT_CLOSED_STATUSES:
            raise ApplicationError(
                f"payout {self._payout_id()} is {self._status.value}", type=PAYOUT_NOT_DISPUTABLE
            )

    @workflow.update
    async def resolve(self, req: ResolveDispute) -> PayoutView:
        self._inbox.append(req)
        position = len(self._inbox)
        await workflow.wait_condition(lambda: self._handled >= position)
        return self.view()

    @resolve.validator
    def _validate_resolve(self, req: ResolveDispute) -> None:
        if self._status != PayoutStatus.DISPUTED:
            raise ApplicationError(
                f"payout {self._payout_id()} is {self._status.value}, not disputed",
                type=PAYOUT_NOT_DISPUTED,
            )
        if req.outcome not in (DisputeOutcome.RELEASE, DisputeOutcome.REFUND):
            raise ApplicationError("ops resolve with release or refund", type=PAYOUT_NOT_DISPUTED)

    @workflow.query
    def view(self) -> PayoutView:
        return PayoutView(
            payout_id=self._payout_id(),
            status=self._status,
            step=self._step,
            hold_until=self._hold_until.isoformat() if self._hold_until else None,
            transfer_id=self._transfer_id,
            dispute_id=self._dispute_id,
        )


PAYOUT_NOT_DISPUTABLE = "PayoutNotDisputable"
PAYOUT_NOT_DISPUTED = "PayoutNotDisputed"
