"""100 marketplace checkouts with the worker killed (``kill -9``) 30 times while they are
charged, held and released: every payout ends released with exactly one transfer of 85 % of
its charge, and the books reconcile with Stripe to the cent.

    .venv/bin/python -m bench.payouts_chaos [--checkouts 100] [--kills 30]

Starts its own stack (``bench/stack.py``): Temporal dev server, a fresh database, Redis, the
sandbox and the API in this process, the worker as a subprocess. Prints a table; exits 1 when
anything is off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from typing import Any

import httpx

from bench.stack import ROOT, Stack, running_stack, wait_ready
from fulfil.money import split_fee


async def make_seller(stack: Stack, http: httpx.AsyncClient) -> dict[str, str]:
    r = await http.post(
        f"{stack.api}/api/v1/merchants",
        json={"name": "Chaos Seller", "email": "seller@example.com"},
        headers=stack.ops,
    )
    r.raise_for_status()
    key = r.json()["api_key"]
    headers = {"Authorization": f"Bearer {key}"}
    r = await http.post(f"{stack.api}/api/seller/create-account", headers=headers)
    r.raise_for_status()
    return headers


async def checkout(
    stack: Stack, http: httpx.AsyncClient, headers: dict[str, str], amount: int
) -> dict[str, Any]:
    key = uuid.uuid4().hex
    body = {
        "listing": "chaos candle",
        "amount": amount,
        "currency": "USD",
        "buyer_email": "buyer@example.com",
        "payment_method": "pm_card_visa",
    }
    for _ in range(60):  # the same key on every retry: one checkout, one charge
        try:
            r = await http.post(
                f"{stack.api}/api/checkout/create-session",
                json=body,
                headers={**headers, "Idempotency-Key": key},
            )
            if r.status_code == 201:
                return {**r.json(), "amount": amount}
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError(f"checkout of {amount} never accepted")


async def killer(stack: Stack, kills: int, stop: asyncio.Event) -> None:
    """Kill the worker at random moments, and start a new one at once."""
    while stack.kills < kills and not stop.is_set():
        await asyncio.sleep(random.uniform(0.5, 2.5))
        stack.kill_worker()
        stack.start_worker()


async def main(checkouts: int, kills: int) -> int:
    started = time.monotonic()
    async with (
        running_stack(
            ROOT / ".data" / "bench" / "payouts_chaos",
            payout_hold_seconds=5,
            payout_run_interval_seconds=2,
            checkout_wait_seconds=0.5,
        ) as stack,
        httpx.AsyncClient(timeout=30) as http,
    ):
        stack.start_worker()
        await wait_ready(stack, http)
        headers = await make_seller(stack, http)
        stop = asyncio.Event()
        chaos = asyncio.create_task(killer(stack, kills, stop))
        amounts = [1000 + 37 * i for i in range(checkouts)]
        made: list[dict[str, Any]] = []
        for batch in range(0, checkouts, 10):
            made += await asyncio.gather(
                *(checkout(stack, http, headers, a) for a in amounts[batch : batch + 10])
            )

        async def statuses() -> Counter[str]:
            counted: Counter[str] = Counter()
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 100}
                if cursor:
                    params["starting_after"] = cursor
                r = await http.get(f"{stack.api}/api/v1/payouts", params=params, headers=stack.ops)
                page = r.json()
                counted.update(p["status"] for p in page["data"])
                if not page["has_more"]:
                    return counted
                cursor = page["data"][-1]["payout_id"]

        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            counted = await statuses()
            if counted["released"] == checkouts and stack.kills >= kills:
                break
            await asyncio.sleep(2)
        stop.set()
        await chaos
        ledger = (await http.get(f"{stack.sandbox}/_sandbox/ledger")).json()
        transfers: dict[str | None, list[dict[str, Any]]] = {}
        for transfer in ledger["transfers"]:
            transfers.setdefault((transfer.get("metadata") or {}).get("payout_id"), []).append(
                transfer
            )
        charges = Counter(
            (pi.get("metadata") or {}).get("payout_id")
            for pi in ledger["payment_intents"]
            if pi["status"] == "succeeded"
        )
        wrong_amount = [
            m["payout_id"]
            for m in made
            if [t["amount"] for t in transfers.get(m["payout_id"], [])]
            != [split_fee(m["amount"], 1500)[1]]
        ]
        report = (
            await http.get(f"{stack.api}/api/v1/ops/reconciliation", headers=stack.ops)
        ).json()
        counted = await statuses()
        rows = [
            ("checkouts", checkouts, checkouts),
            ("worker kills (kill -9)", stack.kills, kills),
            ("payouts released", counted["released"], checkouts),
            (
                "payouts with exactly one transfer",
                sum(len(transfers.get(m["payout_id"], [])) == 1 for m in made),
                checkouts,
            ),
            ("transfers of 85 % of the charge", checkouts - len(wrong_amount), checkouts),
            ("charges per checkout > 1", sum(1 for n in charges.values() if n > 1), 0),
            ("reconciliation differences", len(report["differences"]), 0),
        ]
        print(f"\npayouts chaos run: {time.monotonic() - started:.0f} s, {os.cpu_count()} cores")
        print(f"{'what':<36}{'measured':>10}{'expected':>10}")
        for what, measured, expected in rows:
            flag = "" if measured == expected else "   <-- MISSED"
            print(f"{what:<36}{measured:>10}{expected:>10}{flag}")
        if report["differences"]:
            print("differences:", report["differences"][:5])
        return 0 if all(m == e for _, m, e in rows) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=int, default=100)
    parser.add_argument("--kills", type=int, default=30)
    args = parser.parse_args()
    status = asyncio.run(main(args.checkouts, args.kills))
    sys.stdout.flush()
    os._exit(status)  # temporalio can abort the interpreter at exit (sdk-python #300)
