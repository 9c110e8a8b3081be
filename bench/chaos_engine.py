"""The engine through its API for ``bench/chaos.py``: merchants and shops, orders, deployments of
the sample package and what the sandbox made for them, sandbox faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from bench.stack import ROOT, Stack
from bench.storefront import AU_SHIP_FROM as SHIP_FROM
from devstack.demo import SAMPLE_ADDRESS as ADDRESS

SKU = "CANDLE-1"
SAMPLE_PACKAGE = json.loads((ROOT / "tests" / "fixtures" / "package-candle-shop.json").read_text())
# What the sample package leaves in the buyer's account (tests/integration/test_deployment.py).
SAMPLE_RESOURCES = {
    "namespace": 1,
    "script": 1,
    "d1_database": 1,
    "r2_bucket": 1,
    "custom_domain": 1,
    "dns_record": 1,
    "cron": 1,
}


# --- the engine through its API -------------------------------------------------------------


@dataclass
class Merchant:
    id: str
    headers: dict[str, str]


async def new_merchant(stack: Stack, http: httpx.AsyncClient, **fields: Any) -> Merchant:
    body = {"name": "Chaos Shop", "email": f"chaos-{uuid.uuid4().hex[:8]}@example.com", **fields}
    r = await http.post(f"{stack.api}/api/v1/merchants", json=body, headers=stack.ops)
    r.raise_for_status()
    made = r.json()
    return Merchant(made["merchant_id"], {"Authorization": f"Bearer {made['api_key']}"})


async def new_shop(stack: Stack, http: httpx.AsyncClient, **fields: Any) -> Merchant:
    """A merchant that can ship, with a product in stock."""
    shop = await new_merchant(stack, http, ship_from=SHIP_FROM, **fields)
    r = await http.post(
        f"{stack.api}/api/v1/products",
        json={"sku": SKU, "name": "Candle", "price": 2400, "currency": "USD", "stock": 100_000},
        headers=shop.headers,
    )
    r.raise_for_status()
    return shop


async def place_order(
    stack: Stack, http: httpx.AsyncClient, shop: Merchant, key: str, timeout: float = 30
) -> httpx.Response:
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "items": [{"sku": SKU, "quantity": 1}],
        "shipping_address": ADDRESS,
        "payment_method": "pm_card_visa",
    }
    return await http.post(
        f"{stack.api}/api/v1/orders",
        json=body,
        headers={**shop.headers, "Idempotency-Key": key},
        timeout=timeout,
    )


async def accepted_order(stack: Stack, http: httpx.AsyncClient, shop: Merchant) -> str:
    """An order placed, retried with the same key until the API takes it."""
    key = uuid.uuid4().hex
    for _ in range(60):
        with contextlib.suppress(httpx.HTTPError):
            r = await place_order(stack, http, shop, key)
            if r.status_code == 202:
                return str(r.json()["order_id"])
        await asyncio.sleep(0.5)
    raise RuntimeError("an order was never accepted")


def deploy_body() -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:12]
    return {
        "package": copy.deepcopy(SAMPLE_PACKAGE),
        "cloudflare": {
            "account_id": f"acc{suffix}",
            "api_token": f"cf-{uuid.uuid4().hex}",
            "zone_id": f"zone{suffix}",
        },
        "hostname": f"shop-{suffix}.candles.example.com",
    }


async def deploy(
    stack: Stack, http: httpx.AsyncClient, buyer: Merchant, body: dict[str, Any]
) -> str:
    key = uuid.uuid4().hex  # the same on every retry: one deployment
    for _ in range(60):
        with contextlib.suppress(httpx.HTTPError):
            r = await http.post(
                f"{stack.api}/api/deploy",
                json=body,
                headers={**buyer.headers, "Idempotency-Key": key},
            )
            if r.status_code == 202:
                return str(r.json()["deploymentId"])
        await asyncio.sleep(0.5)
    raise RuntimeError("a deployment was never accepted")


async def deployment(stack: Stack, http: httpx.AsyncClient, deployment_id: str) -> dict[str, Any]:
    r = await http.get(
        f"{stack.api}/api/deploy", params={"deploymentId": deployment_id}, headers=stack.ops
    )
    r.raise_for_status()
    found: dict[str, Any] = r.json()
    return found


def made_for(ledger: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """What the sandbox's Cloudflare made in this deployment's account and zone."""
    account, zone = body["cloudflare"]["account_id"], body["cloudflare"]["zone_id"]
    return [
        r
        for r in ledger["cloudflare_resources"]
        if r.get("account_id") == account or r.get("zone_id") == zone
    ]


def deployment_faults(result: dict[str, Any], made: list[dict[str, Any]]) -> list[str]:
    """What is wrong with a finished deployment of the sample package (empty: nothing)."""
    wrong = []
    if result["status"] != "succeeded":
        wrong.append(f"status {result['status']}")
    counts = {kind: len(items) for kind, items in result["resources"].items()}
    if counts != SAMPLE_RESOURCES:
        wrong.append(f"resources {counts}")
    names = Counter((r["type"], r["name"]) for r in made)
    twice = [f"{kind}:{name}" for (kind, name), n in names.items() if n > 1]
    if twice:
        wrong.append(f"made twice {twice}")
    deleted = [r["type"] for r in made if r.get("deleted")]
    if deleted:
        wrong.append(f"deleted {deleted}")
    return wrong


async def ledger_of(stack: Stack, http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.get(f"{stack.sandbox}/_sandbox/ledger")
    r.raise_for_status()
    found: dict[str, Any] = r.json()
    return found


async def add_faults(stack: Stack, http: httpx.AsyncClient, rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        r = await http.post(f"{stack.sandbox}/_sandbox/faults", json=rule)
        r.raise_for_status()
