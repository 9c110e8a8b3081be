"""Reconciliation: our double-entry books against themselves and against Stripe.

- Every posting, order, payout, and the whole book sums to zero in each currency.
- Every released payout has exactly one live transfer at Stripe (not reversed), to its
  seller's account, of exactly its seller amount; every other payout has none left
  (a reversed transfer counts as none). Stripe's transfers are read through the SDK's
  list call (all of them, paged), and matched by ``metadata.payout_id``.

Run by ops (``GET /api/v1/ops/reconciliation``, ``fulfil reconcile``); it only reads.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import reconciliation
from db.models import Payout
from fulfil.enums import PayoutStatus
from fulfil.messages.payouts import ReconciliationDifference, ReconciliationReport


class Reconciler:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], client: stripe.StripeClient
    ) -> None:
        self._sessionmaker = sessionmaker
        self._stripe = client

    async def reconcile(self) -> ReconciliationReport:
        differences: list[ReconciliationDifference] = []
        async with self._sessionmaker() as session:
            for by in ("posting", "order", "payout", "overall"):
                for subject, currency, amount in await reconciliation.unbalanced(session, by):
                    differences.append(
                        ReconciliationDifference(
                            kind=f"unbalanced_{by}",
                            subject=subject,
                            expected=0,
                            found=amount,
                            detail=f"debits and credits differ by {amount} {currency}",
                        )
                    )
            checked = await reconciliation.counts(session)
            payouts = list(await session.scalars(select(Payout).order_by(Payout.id)))
        transfers = await self._transfers_by_payout()
        for payout in payouts:
            differences += _compare(payout, transfers.pop(payout.id, []))
        for payout_id, unexpected in transfers.items():
            live = [t for t in unexpected if _live_amount(t) > 0]
            if live:
                differences.append(
                    ReconciliationDifference(
                        kind="transfer_without_payout",
                        subject=payout_id,
                        found=", ".join(t["id"] for t in live),
                        detail="Stripe has a transfer for a payout our books do not know",
                    )
                )
        checked["payouts_compared_with_stripe"] = len(payouts)
        return ReconciliationReport(
            balanced=not differences, differences=differences, checked=checked
        )

    async def _transfers_by_payout(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        page = await self._stripe.v1.transfers.list_async({"limit": 100})
        async for transfer in page.auto_paging_iter():
            metadata = transfer.metadata.to_dict() if transfer.metadata else {}
            payout_id = metadata.get("payout_id")
            if payout_id:
                grouped[str(payout_id)].append(
                    {
                        "id": transfer.id,
                        "amount": transfer.amount,
                        "amount_reversed": transfer.amount_reversed,
                        "destination": transfer.destination
                        if isinstance(transfer.destination, str)
                        else getattr(transfer.destination, "id", None),
                    }
                )
        return grouped


def _live_amount(transfer: dict[str, Any]) -> int:
    return int(transfer["amount"]) - int(transfer["amount_reversed"] or 0)


def _compare(payout: Payout, transfers: list[dict[str, Any]]) -> list[ReconciliationDifference]:
    live = [t for t in transfers if _live_amount(t) > 0]
    if payout.status == PayoutStatus.RELEASED.value:
        if len(live) != 1:
            return [
                ReconciliationDifference(
                    kind="released_without_one_transfer",
                    subject=payout.id,
                    expected=1,
                    found=len(live),
                    detail=", ".join(t["id"] for t in live) or "no live transfer at Stripe",
                )
            ]
        [transfer] = live
        problems = []
        if _live_amount(transfer) != payout.seller_amount:
            problems.append(
                ReconciliationDifference(
                    kind="transfer_amount",
                    subject=payout.id,
                    expected=payout.seller_amount,
                    found=_live_amount(transfer),
                    detail=transfer["id"],
                )
            )
        if transfer["destination"] != payout.stripe_account:
            problems.append(
                ReconciliationDifference(
                    kind="transfer_destination",
                    subject=payout.id,
                    expected=payout.stripe_account,
                    found=transfer["destination"],
                    detail=transfer["id"],
                )
            )
        if payout.transfer_id and transfer["id"] != payout.transfer_id:
            problems.append(
                ReconciliationDifference(
                    kind="transfer_id",
                    subject=payout.id,
                    expected=payout.transfer_id,
                    found=transfer["id"],
                )
            )
        return problems
    if live:
        return [
            ReconciliationDifference(
                kind="transfer_not_released",
                subject=payout.id,
                expected=0,
                found=sum(_live_amount(t) for t in live),
                detail=f"payout is {payout.status} but Stripe transferred "
                + ", ".join(t["id"] for t in live),
            )
        ]
    return []
