"""Scenario ``kills`` of ``bench/chaos.py``: orders, checkouts and deployments while the worker is
``kill -9``-ed at random moments and while a charge, a transfer or a Cloudflare create is in
flight; then nothing lost, nothing done twice, the books reconcile.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.service import RPCError

from bench.chaos_common import (
    DEPLOY_ENDED,
    LOGS,
    ORDER_ENDED,
    PAID,
    PAYOUT_ENDED,
    Database,
    Report,
    fresh_logs,
    listed,
    say,
    until,
    worker_started,
    workers_that_died,
)
from bench.chaos_engine import (
    accepted_order,
    add_faults,
    deploy,
    deploy_body,
    deployment,
    deployment_faults,
    ledger_of,
    made_for,
    new_merchant,
    new_shop,
)
from bench.payouts_chaos import checkout, make_seller
from bench.stack import Stack, running_stack, wait_ready
from fulfil.enums import DeploymentStep
from fulfil.ids import deploy_workflow_id, order_workflow_id, payout_workflow_id
from fulfil.money import split_fee

# The activities a kill is aimed at, and where to look for runs that may be in them.
CHARGES = frozenset({"charge", "charge_checkout"})
TRANSFERS = frozenset({"transfer"})
# The steps that create something in the buyer's account (all but the token check).
CLOUDFLARE_CREATES = frozenset(DeploymentStep) - {DeploymentStep.VERIFY_TOKEN}
STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
# Sandbox latency on those calls, so a kill can land while one is in flight.
SLOW_CALLS = [
    {"provider": "stripe", "method": "POST", "path": "payment_intents", "latency_ms": 1000},
    {"provider": "stripe", "method": "POST", "path": "transfers", "latency_ms": 1500},
    {"provider": "cloudflare", "method": "POST", "latency_ms": 800},
    {"provider": "cloudflare", "method": "PUT", "latency_ms": 800},
]


@dataclass
class Sizes:
    orders: int
    checkouts: int
    deployments: int
    kills: int


async def in_flight(stack: Stack, db: Database, kind: str) -> str | None:
    """A run whose ``kind`` activity (charge, transfer, cloudflare) the live worker is running
    now: Temporal shows it started, by this worker process's identity."""
    process = stack.workers[-1] if stack.workers else None
    if process is None or process.poll() is not None:
        return None
    if kind == "charge":
        names = CHARGES
        ids = [order_workflow_id(i) for (i,) in await db.rows(AWAITING_PAYMENT)]
        ids += [payout_workflow_id(i) for (i,) in await db.rows(PAYOUTS_IN, "pending")]
    elif kind == "transfer":
        names = TRANSFERS
        ids = [payout_workflow_id(i) for (i,) in await db.rows(PAYOUTS_IN, "releasable")]
    else:
        names = CLOUDFLARE_CREATES
        ids = [deploy_workflow_id(i) for (i,) in await db.rows(DEPLOYMENTS_RUNNING)]
    random.shuffle(ids)
    identity = f"{process.pid}@"

    async def probe(workflow_id: str) -> str | None:
        try:
            described = await stack.temporal.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return None
        for pending in described.raw_description.pending_activities:
            if (
                pending.activity_type.name in names
                and pending.state == STARTED
                and pending.last_worker_identity.startswith(identity)
            ):
                return f"{workflow_id}: {pending.activity_type.name}"
        return None

    found = await asyncio.gather(*(probe(i) for i in ids[:20]))
    return next((f for f in found if f), None)


AWAITING_PAYMENT = "SELECT id FROM orders WHERE status = 'awaiting_payment'"
PAYOUTS_IN = "SELECT id FROM payouts WHERE status = %s"
DEPLOYMENTS_RUNNING = "SELECT id FROM deployments WHERE status = 'running'"


async def kills(args: argparse.Namespace, report: Report) -> None:
    sizes = Sizes(20, 6, 3, 8) if args.quick else Sizes(200, 50, 20, 50)
    name = "kills"
    fresh_logs(LOGS / "chaos-kills")
    async with (
        running_stack(
            LOGS / "chaos-kills",
            payout_hold_seconds=5,
            payout_run_interval_seconds=2,
            checkout_wait_seconds=0.5,
            deploy_step_heartbeat_seconds=3,
            sticky_schedule_to_start_seconds=1.0,
            worker_metrics_port=0,
        ) as stack,
        httpx.AsyncClient(timeout=30) as http,
    ):
        stack.start_worker()
        await wait_ready(stack, http)
        await worker_started(stack)
        db = Database(stack.settings.database_url)
        shop = await new_shop(stack, http)
        seller = await make_seller(stack, http)
        buyer = await new_merchant(stack, http)
        await add_faults(stack, http, SLOW_CALLS)

        # The work comes in waves, one every few kills, so kills meet every stage of it.
        waves = max(1, sizes.kills // 2)

        def share(total: int, wave: int) -> int:
            return total * (wave + 1) // waves - total * wave // waves

        orders: list[str] = []
        checkouts: list[dict[str, Any]] = []
        deployments: dict[str, dict[str, Any]] = {}

        async def one_deployment() -> None:
            body = deploy_body()
            deployments[await deploy(stack, http, buyer, body)] = body

        async def submit() -> None:
            for wave in range(waves):
                orders.extend(
                    await asyncio.gather(
                        *(
                            accepted_order(stack, http, shop)
                            for _ in range(share(sizes.orders, wave))
                        )
                    )
                )
                checkouts.extend(
                    await asyncio.gather(
                        *(
                            checkout(stack, http, seller, 1000 + 37 * len(checkouts) + i)
                            for i in range(share(sizes.checkouts, wave))
                        )
                    )
                )
                await asyncio.gather(
                    *(one_deployment() for _ in range(share(sizes.deployments, wave)))
                )
                target = (wave + 1) * sizes.kills / waves

                async def reached(target: float = target) -> bool:
                    return stack.kills >= target

                await until(reached, timeout=12, interval=0.2)

        killed: Counter[str] = Counter()
        missed: Counter[str] = Counter()
        examples: dict[str, str] = {}

        async def kill() -> None:
            modes = ["random", "charge", "transfer", "cloudflare"]
            turn = 0
            while stack.kills < sizes.kills:
                mode = modes[turn % len(modes)]
                turn += 1
                if mode == "random":
                    await worker_started(stack)
                    await asyncio.sleep(random.uniform(0.5, 4.0))
                    hit: str | None = "a random moment"
                else:

                    async def found(mode: str = mode) -> str | None:
                        return await in_flight(stack, db, mode)

                    hit = await until(found, 15, 0.4)
                    if hit is None:
                        missed[mode] += 1
                        continue
                stack.kill_worker()
                stack.start_worker()
                killed[mode] += 1
                examples.setdefault(mode, hit or "")
                say(f"kill {stack.kills}/{sizes.kills} during {mode}: {hit}")

        began = time.monotonic()
        await asyncio.gather(submit(), kill())
        say(
            f"{stack.kills} kills in {time.monotonic() - began:.0f} s; "
            f"{len(orders)} orders, {len(checkouts)} checkouts, {len(deployments)} deployments"
        )
        payout_ids = [c["payout_id"] for c in checkouts]

        async def all_ended() -> bool:
            o = dict(await db.rows("SELECT id, status FROM orders WHERE id = ANY(%s)", orders))
            p = dict(await db.rows("SELECT id, status FROM payouts WHERE id = ANY(%s)", payout_ids))
            d = dict(
                await db.rows(
                    "SELECT id, status FROM deployments WHERE id = ANY(%s)", list(deployments)
                )
            )
            left = (
                sum(o.get(i) not in ORDER_ENDED for i in orders),
                sum(p.get(i) not in PAYOUT_ENDED for i in payout_ids),
                sum(d.get(i) not in DEPLOY_ENDED for i in deployments),
            )
            say(f"not yet ended: orders {left[0]}, payouts {left[1]}, deployments {left[2]}")
            return sum(left) == 0

        await until(all_ended, timeout=1200 if not args.quick else 600, interval=5)
        await http.delete(f"{stack.sandbox}/_sandbox/faults")

        # What the API says now.
        order_status = {}
        for order_id in orders:
            r = await http.get(f"{stack.api}/api/v1/orders/{order_id}", headers=shop.headers)
            order_status[order_id] = (
                r.json().get("status") if r.status_code == 200 else r.status_code
            )
        payout_status = {}
        for payout_id in payout_ids:
            r = await http.get(f"{stack.api}/api/v1/payouts/{payout_id}", headers=stack.ops)
            payout_status[payout_id] = (
                r.json().get("status") if r.status_code == 200 else r.status_code
            )
        results = {i: await deployment(stack, http, i) for i in deployments}
        ledger = await ledger_of(stack, http)
        recon = (await http.get(f"{stack.api}/api/v1/ops/reconciliation", headers=stack.ops)).json()

        intents: dict[str, list[dict[str, Any]]] = {}
        for pi in ledger["payment_intents"]:
            meta = pi.get("metadata") or {}
            intents.setdefault(meta.get("order_id") or meta.get("payout_id") or "?", []).append(pi)
        transfers: dict[str, list[dict[str, Any]]] = {}
        for transfer in ledger["transfers"]:
            payout_id = (transfer.get("metadata") or {}).get("payout_id") or "?"
            transfers.setdefault(payout_id, []).append(transfer)
        charged = [*orders, *payout_ids]
        not_one_charge = [
            i for i in charged if sum(p["status"] == "succeeded" for p in intents.get(i, [])) != 1
        ]
        extra_intents = [i for i in charged if len(intents.get(i, [])) > 1]
        not_one_transfer = [p for p in payout_ids if len(transfers.get(p, [])) != 1]
        wrong_amount = [
            c["payout_id"]
            for c in checkouts
            if [t["amount"] for t in transfers.get(c["payout_id"], [])]
            != [split_fee(c["amount"], 1500)[1]]
        ]
        broken = {
            i: deployment_faults(results[i], made_for(ledger, body))
            for i, body in deployments.items()
        }
        broken = {i: w for i, w in broken.items() if w}

        s = name
        report.add(
            s,
            "work",
            f"{sizes.orders} orders, {sizes.checkouts} checkouts, {sizes.deployments} deployments",
            f"{len(orders)} orders, {len(checkouts)} checkouts, {len(deployments)} deployments",
        )
        report.add(s, "worker kills (kill -9, then a new worker)", sizes.kills, stack.kills)
        for mode, what in (
            ("random", "kills at random moments"),
            ("charge", "kills during a charge (Stripe payment_intents in flight)"),
            ("transfer", "kills during a transfer (Stripe transfers in flight)"),
            ("cloudflare", "kills during a Cloudflare create step"),
        ):
            measured = f"{killed[mode]}" + (f" (missed {missed[mode]})" if missed[mode] else "")
            report.add(s, what, ">= 1", measured, killed[mode] >= 1)
        report.add(s, "workers that died on their own", 0, len(workers_that_died(stack)))
        lost_orders = [f"{i}:{st}" for i, st in order_status.items() if st not in PAID]
        report.add(s, "orders lost (not paid or later)", 0, listed(lost_orders))
        lost_payouts = [f"{i}:{st}" for i, st in payout_status.items() if st != "released"]
        report.add(s, "payouts lost (not released)", 0, listed(lost_payouts))
        report.add(
            s,
            "deployments not succeeded with the sample's resources once each",
            0,
            listed([f"{i}: {'; '.join(w)}" for i, w in broken.items()]),
        )
        report.add(
            s,
            "orders and checkouts without exactly one succeeded charge",
            0,
            listed(not_one_charge),
        )
        report.add(
            s, "orders and checkouts with more than one payment intent", 0, listed(extra_intents)
        )
        report.add(s, "payouts without exactly one transfer", 0, listed(not_one_transfer))
        report.add(s, "transfers not 85 % of their charge", 0, listed(wrong_amount))
        report.add(s, "refunds (nothing had to be undone)", 0, len(ledger.get("refunds", [])))
        report.add(
            s,
            "reconciliation (ops)",
            "balanced, 0 differences",
            f"{'balanced' if recon.get('balanced') else 'NOT balanced'}, "
            f"{len(recon.get('differences', []))} differences"
            + (f": {recon['differences'][:3]}" if recon.get("differences") else ""),
        )
        for mode, hit in examples.items():
            say(f"example kill during {mode}: {hit}")
