"""``fulfil demo``: a live tour of the running stack, scenario by scenario, with its outcome.

It drives ``make run``'s stack through the public API and the sandbox's control endpoints as
the demo merchant (``.data/demo.json``), reads progress back as ops, and ends with a table of
what each scenario was expected to end in and what it did. Every wait polls with a deadline.

- storefront orders: one that ships (``fulfilling``, then ``shipped`` once the sandbox's
  carrier scans it), one whose card is declined (``failed``), one cancelled (``cancelled``);
- TikTok Shop orders created in the sandbox (which sends the signed webhook): one fulfilled,
  one the buyer cancels on TikTok;
- a marketplace checkout: the seller's Connect account, the charge, the payout ``holding``
  for ``PAYOUT_HOLD_SECONDS`` (60 s under ``make run``) and then ``released`` (the demo
  triggers the payout-release run once the hold has passed instead of waiting for the
  schedule);
- a package deployment of ``tests/fixtures/package-candle-shop.json`` that succeeds, and one
  that rolls back after a 403 injected at R2 (faults are cleared afterwards). The two take
  turns: the injected fault must meet the second one.

The scenarios are here; the progress rows, the outcome table and the polling they wait with
are in ``ops/demo_progress.py``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.demo import SAMPLE_ADDRESS as ADDRESS
from fulfil.settings import Settings
from ops.api import ApiError, Service
from ops.config import EXIT_FOUND_PROBLEM, EXIT_OK, OpsError
from ops.demo_progress import (
    Scenario,
    Tracker,
    outcome_table,
    poll,
    progress_display,
    run_scenario,
)
from ops.display import out, status, text

PACKAGE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "package-candle-shop.json"
ORDER_PATH = ("pending", "awaiting_payment", "paid", "fulfilling", "shipped")
SHIPPING = ("fulfilling", "shipped", "delivered")
ORDER_ENDS = frozenset({"cancelled", "failed", "refunded", "delivered"})
PAYOUT_ENDS = frozenset({"released", "refunded", "failed"})
DEPLOY_STEPS = 9
ORDER_SECONDS = 60.0
DEPLOY_SECONDS = 90.0
PAYOUT_GRACE_SECONDS = 90.0  # after the hold: the release run, the transfer
PAYOUT_TRIGGER_EVERY = 5.0


@dataclass
class DemoMerchant:
    api_key: str
    tiktok_shop_id: str | None


class Demo:
    def __init__(self, settings: Settings, merchant: DemoMerchant, package: dict[str, Any]):
        self.settings = settings
        self.merchant = merchant
        self.package = package
        self.api = Service("the API", settings.api_base, key=settings.ops_api_key)
        self.sandbox = Service("the sandbox", settings.sandbox_base)
        self.cloudflare_turn = asyncio.Lock()

    async def close(self) -> None:
        await self.api.aclose()
        await self.sandbox.aclose()

    def as_merchant(self, *, idempotent: bool = False) -> dict[str, Any]:
        headers = {"Idempotency-Key": str(uuid.uuid4())} if idempotent else None
        return {"key": self.merchant.api_key, "headers": headers}

    # --- storefront orders ------------------------------------------------------------

    async def place(self, payment_method: str, sku: str = "MUG-1") -> str:
        body = {
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"sku": sku, "quantity": 1}],
            "shipping_address": ADDRESS,
            "payment_method": payment_method,
        }
        accepted = await self.api.post(
            "/api/v1/orders", json=body, **self.as_merchant(idempotent=True)
        )
        return str(accepted["order_id"])

    async def order_status(self, order_id: str) -> str:
        return str((await self.api.get(f"/api/v1/orders/{order_id}"))["status"])

    async def follow_order(
        self, track: Tracker, order_id: str, expected: Iterable[str], seconds: float
    ) -> tuple[str, bool]:
        wanted = frozenset(expected)

        def progress(value: str) -> None:
            step = ORDER_PATH.index(value) + 1 if value in ORDER_PATH else None
            track.update(f"{order_id}  {status(value)}", completed=step)

        final, reached = await poll(
            lambda: self.order_status(order_id),
            lambda value: value in wanted or value in ORDER_ENDS,
            seconds=seconds,
            seen=progress,
        )
        return final, reached and final in wanted

    async def storefront_ships(self, track: Tracker) -> tuple[str, str, bool]:
        order_id = await self.place("pm_card_visa")
        final, ok = await self.follow_order(track, order_id, SHIPPING, ORDER_SECONDS)
        return order_id, final, ok

    async def storefront_declined(self, track: Tracker) -> tuple[str, str, bool]:
        order_id = await self.place("pm_card_chargeDeclined")
        final, ok = await self.follow_order(track, order_id, {"failed"}, ORDER_SECONDS)
        return order_id, final, ok

    async def storefront_cancelled(self, track: Tracker) -> tuple[str, str, bool]:
        order_id = await self.place("pm_card_visa")
        track.update(f"{order_id}  cancelling")

        async def cancel() -> str:
            try:
                answer = await self.api.post(
                    f"/api/v1/orders/{order_id}/cancel", key=self.merchant.api_key
                )
            except ApiError as err:
                if err.status in (503, 504):  # the run is not reachable yet: ask again
                    return "retry"
                raise
            return str(answer["status"])

        final, reached = await poll(cancel, lambda value: value != "retry", seconds=ORDER_SECONDS)
        if not reached:
            return order_id, "cancel not answered", False
        final, ok = await self.follow_order(track, order_id, {"cancelled"}, ORDER_SECONDS)
        return order_id, final, ok

    # --- TikTok Shop --------------------------------------------------------------------

    async def tiktok_order(self) -> str:
        if not self.merchant.tiktok_shop_id:
            raise OpsError("the demo merchant has no TikTok shop (.data/demo.json)")
        created = await self.sandbox.post(
            "/_sandbox/tiktok/orders",
            json={
                "shop_id": self.merchant.tiktok_shop_id,
                "items": [{"sku": "CANDLE-1", "quantity": 1, "price": 1500}],
                "address": ADDRESS,
            },
        )
        return str(created["order_id"])

    async def engine_order_of(self, tiktok_id: str) -> str | None:
        """Our order for a TikTok order, once its webhook made one (newest first: page one)."""
        page = await self.api.get("/api/v1/orders", params={"source": "tiktok", "limit": 100})
        for order in page["data"]:
            if order["external_id"] == tiktok_id:
                return str(order["order_id"])
        return None

    async def tiktok(self, track: Tracker, *, cancel: bool) -> tuple[str, str, bool]:
        tiktok_id = await self.tiktok_order()
        track.update(f"TikTok order {tiktok_id}")
        if cancel:  # the buyer cancels on TikTok; the sandbox sends CANCELLED
            await self.sandbox.post(f"/_sandbox/tiktok/orders/{tiktok_id}/cancel")
        order_id, found = await poll(
            lambda: self.engine_order_of(tiktok_id), bool, seconds=ORDER_SECONDS
        )
        if not found or order_id is None:
            return f"TikTok {tiktok_id}", "no order in the engine", False
        wanted = {"cancelled"} if cancel else SHIPPING
        final, ok = await self.follow_order(track, order_id, wanted, ORDER_SECONDS)
        return order_id, final, ok

    # --- marketplace ---------------------------------------------------------------------

    async def checkout_paid_out(self, track: Tracker) -> tuple[str, str, bool]:
        await self.api.post("/api/seller/create-account", key=self.merchant.api_key)
        checkout = await self.api.post(
            "/api/checkout/create-session",
            json={
                "listing": "Soy candle",
                "amount": 4000,
                "currency": "USD",
                "buyer_email": "buyer@example.com",
                "payment_method": "pm_card_visa",
            },
            **self.as_merchant(idempotent=True),
        )
        payout_id = str(checkout["payout_id"])
        seen: list[str] = []
        last_trigger = 0.0
        loop = asyncio.get_running_loop()

        async def read() -> dict[str, Any]:
            nonlocal last_trigger
            payout: dict[str, Any] = await self.api.get(f"/api/v1/payouts/{payout_id}")
            if not seen or seen[-1] != payout["status"]:
                seen.append(str(payout["status"]))
            hold_until = _moment(payout.get("hold_until"))
            left = (hold_until - datetime.now(UTC)).total_seconds() if hold_until else None
            if payout["status"] == "holding" and left is not None and left > 0:
                track.update(f"{payout_id}  holding, {left:.0f} s left", completed=1)
            elif payout["status"] in ("holding", "releasable") and left is not None:
                track.update(f"{payout_id}  hold over: release run", completed=2)
                # The schedule would do it within PAYOUT_RUN_INTERVAL_SECONDS; ask now.
                if loop.time() - last_trigger >= PAYOUT_TRIGGER_EVERY:
                    last_trigger = loop.time()
                    await self.api.post("/api/v1/ops/payout-runs")
            else:
                track.update(f"{payout_id}  {status(payout['status'])}")
            return payout

        first = await read()
        hold_until = _moment(first.get("hold_until"))
        wait = (hold_until - datetime.now(UTC)).total_seconds() if hold_until else 0.0
        payout, reached = await poll(
            read,
            lambda p: p["status"] in PAYOUT_ENDS,
            seconds=max(wait, 0.0) + PAYOUT_GRACE_SECONDS,
            interval=2.0,
        )
        path = " → ".join(seen)
        ok = reached and payout["status"] == "released" and "holding" in seen
        if payout.get("transfer_id"):
            path += f" ({payout['transfer_id']})"
        return payout_id, path, ok

    # --- Cloudflare package deployment ----------------------------------------------------

    async def deploy(self) -> str:
        account = "acc" + secrets.token_hex(4)
        body = {
            "package": self.package,
            "cloudflare": {
                "account_id": account,
                "api_token": "cf-demo-token",
                "zone_id": "zone" + account,
            },
            "hostname": f"shop-{account}.candles.example.com",
        }
        accepted = await self.api.post(
            "/api/deploy", json=body, **self.as_merchant(idempotent=True)
        )
        return str(accepted["deploymentId"])

    async def follow_deployment(self, track: Tracker, deployment_id: str) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            found: dict[str, Any] = await self.api.get(
                "/api/deploy", params={"deploymentId": deployment_id}
            )
            return found

        def progress(found: dict[str, Any]) -> None:
            done = sum(1 for step in found["steps"] if step["status"] == "succeeded")
            current = next(
                (s["name"] for s in found["steps"] if s["status"] in ("running", "failed")), ""
            )
            track.update(
                f"{deployment_id}  {status(found['status'])} {text(current)}", completed=done
            )

        found, _ = await poll(
            read,
            lambda d: d["status"] not in ("pending", "running"),
            seconds=DEPLOY_SECONDS,
            interval=0.5,
            seen=progress,
        )
        return found

    async def deployment_succeeds(self, track: Tracker) -> tuple[str, str, bool]:
        async with self.cloudflare_turn:
            deployment_id = await self.deploy()
            found = await self.follow_deployment(track, deployment_id)
        done = sum(1 for step in found["steps"] if step["status"] == "succeeded")
        return (
            deployment_id,
            f"{found['status']} ({done}/{DEPLOY_STEPS} steps)",
            (found["status"] == "succeeded"),
        )

    async def deployment_rolls_back(self, track: Tracker) -> tuple[str, str, bool]:
        async with self.cloudflare_turn:
            track.update("403 injected at R2 (sandbox fault)")
            await self.sandbox.post(
                "/_sandbox/faults",
                json={
                    "provider": "cloudflare",
                    "method": "POST",
                    "path": "/r2/buckets",
                    "status": 403,
                    "times": 1,
                },
            )
            try:
                deployment_id = await self.deploy()
                found = await self.follow_deployment(track, deployment_id)
            finally:
                await self.sandbox.delete("/_sandbox/faults")
        failed = found.get("failed_step") or "?"
        return deployment_id, f"{found['status']} at {failed}", found["status"] == "rolled_back"


def scenarios(demo: Demo) -> list[Scenario]:
    """(name, expected end, progress steps, run) in the order they are shown."""
    shipping = "fulfilling/shipped"
    return [
        ("storefront order", shipping, 4, demo.storefront_ships),
        ("storefront, card declined", "failed", 4, demo.storefront_declined),
        ("storefront, cancelled", "cancelled", 4, demo.storefront_cancelled),
        ("TikTok order", shipping, 4, lambda t: demo.tiktok(t, cancel=False)),
        ("TikTok, cancelled by buyer", "cancelled", 4, lambda t: demo.tiktok(t, cancel=True)),
        ("marketplace payout", "holding → released", 3, demo.checkout_paid_out),
        ("package deployment", "succeeded", DEPLOY_STEPS, demo.deployment_succeeds),
        ("deployment, 403 at R2", "rolled_back", DEPLOY_STEPS, demo.deployment_rolls_back),
    ]


def read_package(path: Path = PACKAGE) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise OpsError(f"cannot read the sample package {path}: {err}") from err
    return manifest


async def run_demo(settings: Settings, merchant: DemoMerchant, package: dict[str, Any]) -> int:
    demo = Demo(settings, merchant, package)
    try:
        await demo.api.get("/api/v1/merchants/me", key=merchant.api_key)  # the key still works
        plan = scenarios(demo)
        progress = progress_display()
        with progress:
            outcomes = await asyncio.gather(
                *(run_scenario(progress, scenario) for scenario in plan)
            )
    finally:
        await demo.close()
    out.print(outcome_table(outcomes))
    failed = [o for o in outcomes if not o.ok]
    ui = settings.temporal_ui_url.rstrip("/")
    out.print(
        f"Details: [bold]fulfil orders show ID[/bold]; every run in the Temporal UI at "
        f"{ui}/namespaces/{settings.temporal_namespace}/workflows"
    )
    if failed:
        out.print(f"[red bold]{len(failed)} of {len(outcomes)} scenarios off their end.[/]")
        return EXIT_FOUND_PROBLEM
    out.print(f"[green bold]All {len(outcomes)} scenarios ended as expected.[/]")
    return EXIT_OK


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
