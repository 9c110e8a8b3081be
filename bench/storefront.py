"""The bench merchant and its storefront orders, through the public API as a shop would.

One merchant with a ship-from address, the cheapest-rate policy and a webhook endpoint in the
sandbox (so every status sends a merchant webhook, as in production), one product with all the
stock there is, and orders of one mug paid by card (no 3-D Secure) to a US address.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import Stack

# The Australian shop of bench/reads.py, webhooks.py and chaos.py.
AU_SHIP_FROM = {
    "name": "Candle Works",
    "street1": "5 Wharf Rd",
    "city": "Melbourne",
    "state": "VIC",
    "zip": "3000",
    "country": "AU",
}
SHIP_FROM = {
    "name": "Bench Shop",
    "street1": "500 Market St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94105",
    "country": "US",
    "phone": "+1 415 555 0100",
    "email": "shipping@bench-shop.example",
}
ORDER = {
    "customer": {"email": "ada@example.com", "name": "Ada"},
    "items": [{"sku": "MUG-1", "quantity": 1}],
    "shipping_address": {
        "name": "Ada",
        "street1": "1 Main St",
        "city": "Portland",
        "state": "OR",
        "zip": "97201",
        "country": "US",
    },
    "payment_method": "pm_card_visa",
}


async def make_merchant(stack: Stack, http: httpx.AsyncClient) -> dict[str, str]:
    r = await http.post(
        f"{stack.api}/api/v1/merchants",
        json={
            "name": "Bench Shop",
            "email": "owner@bench-shop.example",
            "ship_from": SHIP_FROM,
            "shipping_policy": {"rate": "cheapest"},
            "webhook_url": f"{stack.sandbox}/_sandbox/hooks/bench-shop",
        },
        headers=stack.ops,
    )
    r.raise_for_status()
    headers = {"Authorization": f"Bearer {r.json()['api_key']}"}
    r = await http.post(
        f"{stack.api}/api/v1/products",
        json={
            "sku": "MUG-1",
            "name": "Ceramic mug",
            "price": 1800,
            "currency": "USD",
            "stock": 2**31 - 1,
            "weight_grams": 350,
        },
        headers=headers,
    )
    r.raise_for_status()
    return headers


async def post_order(stack: Stack, http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    key = uuid.uuid4().hex
    for _ in range(30):  # the same key on every retry: one order
        try:
            r = await http.post(
                f"{stack.api}/api/v1/orders",
                json=ORDER,
                headers={**headers, "Idempotency-Key": key},
            )
            if r.status_code == 202:
                return str(r.json()["order_id"])
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("an order was never accepted")


# --- progress, read from PostgreSQL (the read model) ------------------------------------


async def fulfilling_since(db: AsyncEngine) -> dict[str, float]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text("SELECT order_id, at FROM order_events WHERE type = 'fulfilment.started'")
        )
        return {order_id: at.timestamp() for order_id, at in rows}


async def count_ended(db: AsyncEngine) -> tuple[int, int]:
    """Orders at ``fulfilling`` or beyond, and orders that failed or were cancelled."""
    async with db.connect() as conn:
        reached = await conn.scalar(
            text("SELECT count(*) FROM order_events WHERE type = 'fulfilment.started'")
        )
        failed = await conn.scalar(
            text("SELECT count(*) FROM orders WHERE status IN ('failed', 'cancelled')")
        )
        return int(reached or 0), int(failed or 0)


async def settled(db: AsyncEngine, orders: int, timeout: float) -> bool:
    """Wait until ``orders`` orders have their label recorded and no outbox row waits (the
    Shipment children bought their labels, the tracking webhooks reached them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with db.connect() as conn:
            labelled = await conn.scalar(
                text("SELECT count(*) FROM orders WHERE tracking_number IS NOT NULL")
            )
            waiting = await conn.scalar(
                text("SELECT count(*) FROM outbox WHERE dispatched_at IS NULL")
            )
        if int(labelled or 0) >= orders and not waiting:
            return True
        await asyncio.sleep(0.5)
    return False
