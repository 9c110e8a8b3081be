"""The demo merchant of ``make run``: seeded through the public API, kept in ``.data/demo.json``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from devstack import DATA_DIR, StartupError

DEMO_FILE = DATA_DIR / "demo.json"
DEMO_HOOK_NAME = "demo-merchant"


@dataclass
class DemoMerchant:
    merchant_id: str
    api_key: str
    webhook_secret: str
    seeded: bool = False
    tiktok_shop_id: str | None = None


# A customer's address the demo, the ops CLI's demo and the benchmarks ship to.
SAMPLE_ADDRESS = {
    "name": "Ada",
    "street1": "1 Main St",
    "city": "Sydney",
    "state": "NSW",
    "zip": "2000",
    "country": "AU",
}

DEMO_SHIP_FROM = {
    "name": "Demo Shop",
    "street1": "500 Market St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94105",
    "country": "US",
    "phone": "+1 415 555 0100",
    "email": "shipping@demo-shop.example",
}

DEMO_PRODUCTS = (
    {"sku": "MUG-1", "name": "Ceramic mug", "price": 1800, "stock": 100, "weight_grams": 350},
    {"sku": "TEE-1", "name": "Cotton tee", "price": 2500, "stock": 100, "weight_grams": 200},
    {"sku": "CANDLE-1", "name": "Soy candle", "price": 1500, "stock": 50, "weight_grams": 400},
)

DEMO_ORDER = {
    "customer": {"email": "ada@example.com", "name": "Ada"},
    "items": [{"sku": "MUG-1", "quantity": 2}],
    "shipping_address": SAMPLE_ADDRESS,
    "discount_code": "WELCOME10",
    "payment_method": "pm_card_visa",
}


def _check(response: httpx.Response, what: str, *, ok: Sequence[int] = (200, 201)) -> None:
    if response.status_code not in ok:
        raise StartupError(f"{what}: HTTP {response.status_code} {response.text[:300]}")


def load_demo(path: Path = DEMO_FILE) -> DemoMerchant | None:
    try:
        return DemoMerchant(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save_demo(demo: DemoMerchant, path: Path = DEMO_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(demo), indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def seed_demo(
    api_base: str,
    ops_key: str,
    *,
    sandbox_base: str,
    currency: str = "USD",
    path: Path = DEMO_FILE,
) -> tuple[DemoMerchant, bool]:
    """The demo merchant (reused from ``path`` while it exists) with its catalogue.

    Returns the merchant and whether it was created now.
    """
    with httpx.Client(base_url=api_base, timeout=10.0) as http:
        demo = load_demo(path)
        created = False
        if demo is not None:
            me = http.get("/api/v1/merchants/me", headers=_bearer(demo.api_key))
            if me.status_code in (401, 403, 404):
                demo = None
            else:
                _check(me, "GET /api/v1/merchants/me", ok=(200,))
        if demo is None:
            # Unique per demo merchant: an older one may still hold a shop id in this database.
            shop_id = "7494" + "".join(secrets.choice("0123456789") for _ in range(15))
            response = http.post(
                "/api/v1/merchants",
                headers=_bearer(ops_key),
                json={
                    "name": "Demo Shop",
                    "email": "owner@demo-shop.example",
                    "ship_from": DEMO_SHIP_FROM,
                    "shipping_policy": {"rate": "cheapest"},
                    "webhook_url": f"{sandbox_base.rstrip('/')}/_sandbox/hooks/{DEMO_HOOK_NAME}",
                    "tiktok_shop_id": shop_id,
                },
            )
            _check(response, "POST /api/v1/merchants", ok=(201,))
            body = response.json()
            demo = DemoMerchant(
                merchant_id=str(body["merchant_id"]),
                api_key=str(body["api_key"]),
                webhook_secret=str(body["webhook_secret"]),
                tiktok_shop_id=shop_id,
            )
            save_demo(demo, path)  # the key is shown once: keep it before anything else
            created = True
        if not demo.seeded:
            auth = _bearer(demo.api_key)
            for product in DEMO_PRODUCTS:
                response = http.post(
                    "/api/v1/products", headers=auth, json={**product, "currency": currency}
                )
                _check(response, f"POST /api/v1/products {product['sku']}", ok=(201, 409))
            response = http.post(
                "/api/v1/discounts", headers=auth, json={"code": "WELCOME10", "percent_off": 10}
            )
            _check(response, "POST /api/v1/discounts WELCOME10", ok=(200, 201, 409))
            demo.seeded = True
            save_demo(demo, path)
        return demo, created


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
