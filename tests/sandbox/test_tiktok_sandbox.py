"""The TikTok Shop stand-in: signed API calls, order webhooks and their bad deliveries.

The webhooks go to a small engine stand-in (served beside the sandbox) that
checks the ``Authorization`` signature like the engine must: 401 for a bad
one, 200 otherwise, and can fail the next N deliveries with a 500.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from devstack.harness import loopback_socket, serve_in_thread
from fulfil.settings import Settings
from fulfil.signatures import tiktok_api_signature, tiktok_webhook_signature
from sandbox.app import create_app
from sandbox.tiktok_api import SHIPPING_PROVIDERS, shop_cipher
from tests.sandbox.conftest import Sandbox, eventually

APP_KEY = "tiktok_test_app"
APP_SECRET = "tiktok_test_secret"
ACCESS_TOKEN = "tiktok_test_access_token"
SHOP_ID = "7494049642642441621"
USPS = next(pid for pid, name in SHIPPING_PROVIDERS.items() if name == "USPS")

ADDRESS = {
    "name": "Ada Lovelace",
    "street1": "1 Main St",
    "street2": "Apt 4",
    "city": "Los Angeles",
    "state": "California",
    "zip": "90001",
    "country": "US",
}
ORDER = {
    "shop_id": SHOP_ID,
    "items": [
        {"sku": "MUG-1", "quantity": 2, "price": 1250},
        {"sku": "CANDLE-2", "quantity": 1, "price": 899},
    ],
    "address": ADDRESS,
}


# ----------------------------------------------------------- engine stand-in


@dataclass
class EngineStandIn:
    """Receives ``POST /webhooks/tiktok`` and checks the signature like the engine."""

    received: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/webhooks/tiktok")
        async def webhook(request: Request) -> Response:
            body = await request.body()
            expected = tiktok_webhook_signature(APP_KEY, APP_SECRET, body)
            signed = hmac.compare_digest(expected, request.headers.get("authorization", ""))
            if not signed:
                status = 401
            elif self.fail_next > 0:
                self.fail_next -= 1
                status = 500
            else:
                status = 200
            self.received.append({"body": json.loads(body), "raw": body, "status": status})
            return Response(status_code=status)

        return app

    def accepted(self, order_id: str | None = None) -> list[dict[str, Any]]:
        """Bodies of the correctly signed deliveries answered 200, oldest first."""
        return [
            r["body"]
            for r in self.received
            if r["status"] == 200 and order_id in (None, r["body"]["data"]["order_id"])
        ]


@dataclass
class TikTokSandbox:
    sandbox: Sandbox
    engine: EngineStandIn


@pytest.fixture(scope="module")
def tiktok_sandbox() -> Iterator[TikTokSandbox]:
    engine = EngineStandIn()
    with serve_in_thread(engine.app()) as engine_url:
        sock = loopback_socket()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = Settings(
            env="test",
            api_base=engine_url,
            sandbox_base=base,
            tiktok_app_key=APP_KEY,
            tiktok_app_secret=APP_SECRET,
            tiktok_access_token=ACCESS_TOKEN,
            sandbox_clock_pace=0,
        )
        app = create_app(settings)
        with serve_in_thread(app, sock) as url:
            yield TikTokSandbox(Sandbox(base_url=url, settings=settings, app=app), engine)


@pytest.fixture
async def http(tiktok_sandbox: TikTokSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tiktok_sandbox.sandbox.base_url, timeout=10) as client:
        (await client.post("/_sandbox/reset")).raise_for_status()
        tiktok_sandbox.engine.received.clear()
        tiktok_sandbox.engine.fail_next = 0
        yield client


@pytest.fixture
def engine(tiktok_sandbox: TikTokSandbox, http: httpx.AsyncClient) -> EngineStandIn:
    return tiktok_sandbox.engine


# ------------------------------------------------------------------ helpers


def signed_params(
    path: str,
    body: bytes = b"",
    *,
    shop: str | None = SHOP_ID,
    secret: str = APP_SECRET,
    **extra: str,
) -> dict[str, str]:
    params = {"app_key": APP_KEY, "timestamp": str(int(time.time())), **extra}
    if shop is not None:
        params["shop_cipher"] = shop_cipher(shop)
    params["sign"] = tiktok_api_signature(secret, path, params, body)
    return params


async def tiktok_get(
    http: httpx.AsyncClient, path: str, *, token: str = ACCESS_TOKEN, **params: str
) -> httpx.Response:
    return await http.get(
        f"/tiktok{path}",
        params=signed_params(path, **params),
        headers={"x-tts-access-token": token},
    )


async def ship(
    http: httpx.AsyncClient,
    package_id: str,
    tracking_number: str,
    handover: str = "PICKUP",
    provider: str = USPS,
) -> dict[str, Any]:
    path = f"/fulfillment/202309/packages/{package_id}/ship"
    body = json.dumps(
        {
            "handover_method": handover,
            "self_shipment": {"tracking_number": tracking_number, "shipping_provider_id": provider},
        }
    ).encode()
    response = await http.post(
        f"/tiktok{path}",
        params=signed_params(path, body),
        content=body,
        headers={"x-tts-access-token": ACCESS_TOKEN, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


async def create_order(http: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await http.post("/_sandbox/tiktok/orders", json={**ORDER, **extra})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries(http: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    response = await http.get("/_sandbox/tiktok/deliveries", params={"order_id": order_id})
    response.raise_for_status()
    log: list[dict[str, Any]] = response.json()
    return log


async def ledger(http: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    book: dict[str, list[dict[str, Any]]] = (await http.get("/_sandbox/ledger")).json()
    return book


def accepted_statuses(engine: EngineStandIn, order_id: str) -> list[str]:
    return [b["data"]["order_status"] for b in engine.accepted(order_id)]


# ------------------------------------------------------------------- orders


async def test_new_order_delivers_a_signed_awaiting_shipment_webhook(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    created = await create_order(http)
    order_id = created["order_id"]
    assert created["status"] == "AWAITING_SHIPMENT"
    assert created["shop_cipher"] == shop_cipher(SHOP_ID)

    async def arrived() -> list[dict[str, Any]]:
        return engine.accepted(order_id)

    [body] = await eventually(arrived)
    assert body["type"] == 1
    assert body["tts_notification_id"] == created["notification_id"]
    assert body["shop_id"] == SHOP_ID
    assert isinstance(body["timestamp"], int)
    assert body["data"]["order_id"] == order_id
    assert body["data"]["order_status"] == "AWAITING_SHIPMENT"
    assert body["data"]["is_on_hold_order"] is False
    assert isinstance(body["data"]["update_time"], int)
    [call] = engine.received
    assert (
        call["status"] == 200
    )  # the stand-in verified Authorization with tiktok_webhook_signature
    [attempt] = await deliveries(http, order_id)
    assert attempt["kind"] == "original"
    assert attempt["signature_ok"] is True
    assert attempt["response_status"] == 200
    assert attempt["notification_id"] == created["notification_id"]


async def test_order_detail_has_tiktoks_shape(http: httpx.AsyncClient) -> None:
    created = await create_order(http, shipping_fee=499, buyer_email="ada@example.com")

    response = await tiktok_get(http, "/order/202309/orders", ids=created["order_id"])

    assert response.status_code == 200
    reply = response.json()
    assert reply["code"] == 0
    assert reply["message"] == "Success"
    assert reply["request_id"]
    [order] = reply["data"]["orders"]
    assert order["id"] == created["order_id"]
    assert order["status"] == "AWAITING_SHIPMENT"
    assert order["shop_id"] == SHOP_ID
    assert order["buyer_email"] == "ada@example.com"
    assert order["create_time"] < order["update_time"]
    assert order["packages"] == [{"id": created["package_id"]}]
    address = order["recipient_address"]
    assert address["name"] == "Ada Lovelace"
    assert address["address_line1"] == "1 Main St"
    assert address["address_line2"] == "Apt 4"
    assert address["postal_code"] == "90001"
    assert address["region_code"] == "US"
    assert address["phone_number"]
    assert address["full_address"].startswith("1 Main St, Apt 4, Los Angeles")
    levels = {d["address_level_name"]: d["address_name"] for d in address["district_info"]}
    assert levels == {"Country": "United States", "State": "California", "City": "Los Angeles"}
    # One line item per unit, like TikTok's.
    items = order["line_items"]
    assert [i["seller_sku"] for i in items] == ["MUG-1", "MUG-1", "CANDLE-2"]
    assert len({i["id"] for i in items}) == 3
    assert items[0]["sku_id"] == items[1]["sku_id"] != items[2]["sku_id"]
    assert items[0]["sale_price"] == "12.50"
    assert items[2]["sale_price"] == "8.99"
    assert items[0]["currency"] == "USD"
    assert items[0]["product_name"] == "MUG-1"
    assert all(i["package_id"] == created["package_id"] for i in items)
    payment = order["payment"]
    assert payment["currency"] == "USD"
    assert payment["sub_total"] == "33.99"
    assert payment["shipping_fee"] == "4.99"
    assert payment["total_amount"] == "38.98"

    control = await http.get(f"/_sandbox/tiktok/orders/{created['order_id']}")
    assert control.json() == order
    assert (await http.get("/_sandbox/tiktok/orders/1")).status_code == 404


async def test_order_detail_of_unknown_ids_or_another_shop_is_not_found(
    http: httpx.AsyncClient,
) -> None:
    mine = await create_order(http)
    theirs = await create_order(http, shop_id="7000000000000000001")

    unknown = (await tiktok_get(http, "/order/202309/orders", ids="576000000000000000")).json()
    other_shop = (await tiktok_get(http, "/order/202309/orders", ids=theirs["order_id"])).json()
    both = (
        await tiktok_get(
            http, "/order/202309/orders", ids=f"{mine['order_id']},{theirs['order_id']}"
        )
    ).json()
    no_ids = (await tiktok_get(http, "/order/202309/orders")).json()

    assert unknown["code"] == 21011001
    assert unknown["data"] is None
    assert other_shop["code"] == 21011001
    assert both["code"] == 21011001
    assert no_ids["code"] == 36009003


# ------------------------------------------------------------------ signing


async def test_requests_with_a_bad_signature_or_credentials_are_refused(
    http: httpx.AsyncClient,
) -> None:
    created = await create_order(http)
    path = "/order/202309/orders"
    good = signed_params(path, ids=created["order_id"])
    headers = {"x-tts-access-token": ACCESS_TOKEN}

    async def call(params: dict[str, str], token: str = ACCESS_TOKEN) -> httpx.Response:
        return await http.get(
            f"/tiktok{path}", params=params, headers={"x-tts-access-token": token}
        )

    assert (await call(good)).json()["code"] == 0
    refused = [
        await call({**good, "sign": "0" * 64}),
        await call({**good, "sign": good["sign"].upper()}),
        await call(signed_params(path, ids=created["order_id"], secret="wrong")),
        await call({**good, "ids": "1"}),  # signed for other parameters
        await call(good, token="expired"),
        await call({**good, "app_key": "other"}),
        await call(
            signed_params(path, ids=created["order_id"], timestamp=str(int(time.time()) - 900))
        ),
        await http.get(f"/tiktok{path}", params=good),  # no access token header
    ]
    for response in refused:
        assert response.status_code == 401, response.text
        assert response.json()["code"] == 106001
        assert response.json()["data"] is None
        assert response.json()["request_id"]
    # The access_token query parameter is not part of the signature.
    assert (await call({**good, "access_token": "ignored"})).json()["code"] == 0
    # The body is: a ship request whose body was changed after signing is refused.
    ship_path = f"/fulfillment/202309/packages/{created['package_id']}/ship"
    signed_body = b'{"self_shipment": {"tracking_number": "1", "shipping_provider_id": "1"}}'
    tampered = await http.post(
        f"/tiktok{ship_path}",
        params=signed_params(ship_path, signed_body),
        content=signed_body.replace(b'"1"', b'"2"'),
        headers=headers,
    )
    assert tampered.status_code == 401
    unknown_cipher = await tiktok_get(http, path, ids=created["order_id"], shop="nobody")
    assert unknown_cipher.json()["code"] == 36009003


async def test_authorized_shops_and_shipping_providers(http: httpx.AsyncClient) -> None:
    await create_order(http)
    shops = (await tiktok_get(http, "/authorization/202309/shops", shop=None)).json()
    assert shops["code"] == 0
    [shop] = shops["data"]["shops"]
    assert shop["id"] == SHOP_ID
    assert shop["cipher"] == shop_cipher(SHOP_ID)

    order = (
        await http.get("/_sandbox/tiktok/orders/" + (await create_order(http))["order_id"])
    ).json()
    providers = await tiktok_get(
        http, f"/logistics/202309/delivery_options/{order['delivery_option_id']}/shipping_providers"
    )
    names = {p["name"]: p["id"] for p in providers.json()["data"]["shipping_providers"]}
    assert names["USPS"] == USPS
    assert {"UPS", "FedEx"} <= set(names)


# --------------------------------------------------------------------- ship


async def test_shipping_a_package_is_idempotent_per_tracking_number(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    created = await create_order(http)
    order_id, package_id = created["order_id"], created["package_id"]

    first = await ship(http, package_id, "9205590164917312751089")
    again = await ship(http, package_id, "9205590164917312751089")

    assert first["code"] == 0
    assert first["data"] == {}
    assert again["code"] == 0
    [entry] = (await ledger(http))["tiktok_shipments"]
    assert entry["id"] == package_id
    assert entry["order_id"] == order_id
    assert entry["shop_id"] == SHOP_ID
    assert entry["package_id"] == package_id
    assert entry["tracking_number"] == "9205590164917312751089"
    assert entry["shipping_provider_id"] == USPS
    assert entry["carrier"] == "USPS"
    assert entry["handover_method"] == "PICKUP"
    order = (await http.get(f"/_sandbox/tiktok/orders/{order_id}")).json()
    assert order["status"] == "AWAITING_COLLECTION"
    assert order["tracking_number"] == "9205590164917312751089"
    assert order["shipping_provider"] == "USPS"
    assert {i["tracking_number"] for i in order["line_items"]} == {"9205590164917312751089"}

    other = await ship(http, package_id, "1Z999AA10123456784")
    assert other["code"] == 21011003
    assert len((await ledger(http))["tiktok_shipments"]) == 1

    async def status_changes() -> bool:
        return accepted_statuses(engine, order_id) == ["AWAITING_SHIPMENT", "AWAITING_COLLECTION"]

    await eventually(status_changes)

    dropped_off = await create_order(http)
    assert (await ship(http, dropped_off["package_id"], "1Z1", handover="DROP_OFF"))["code"] == 0
    order = (await http.get(f"/_sandbox/tiktok/orders/{dropped_off['order_id']}")).json()
    assert order["status"] == "IN_TRANSIT"
    unknown_package = await ship(http, "1150000000000000000", "1Z2")
    assert unknown_package["code"] == 21011001
    by_name = await create_order(http)
    refused = await ship(http, by_name["package_id"], "1Z3", provider="USPS")
    assert refused["code"] == 36009003
    assert len((await ledger(http))["tiktok_shipments"]) == 2


# ------------------------------------------------------------------- cancel


async def test_cancel_delivers_cancelled_and_forbids_shipping(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    created = await create_order(http)
    order_id = created["order_id"]

    cancelled = await http.post(f"/_sandbox/tiktok/orders/{order_id}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    assert cancelled.json()["cancellation_initiator"] == "BUYER"

    async def both_delivered() -> bool:
        return set(accepted_statuses(engine, order_id)) == {"AWAITING_SHIPMENT", "CANCELLED"}

    await eventually(both_delivered)
    [cancel_body] = [
        b for b in engine.accepted(order_id) if b["data"]["order_status"] == "CANCELLED"
    ]
    assert cancel_body["tts_notification_id"] == cancelled.json()["notification_id"]
    [create_body] = [
        b for b in engine.accepted(order_id) if b["data"]["order_status"] == "AWAITING_SHIPMENT"
    ]
    assert cancel_body["data"]["update_time"] > create_body["data"]["update_time"]

    refused = await ship(http, created["package_id"], "9205590164917312751089")
    assert refused["code"] == 21011002
    assert (await ledger(http))["tiktok_shipments"] == []
    assert (await http.post(f"/_sandbox/tiktok/orders/{order_id}/cancel")).status_code == 409
    assert (await http.post("/_sandbox/tiktok/orders/1/cancel")).status_code == 404

    shipped = await create_order(http)
    await ship(http, shipped["package_id"], "9205590164917312751090")
    late = await http.post(f"/_sandbox/tiktok/orders/{shipped['order_id']}/cancel")
    assert late.status_code == 409


# -------------------------------------------------------- bad deliveries


async def test_duplicate_delivery_repeats_the_same_notification(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    created = await create_order(http, duplicate=True)
    order_id = created["order_id"]

    async def twice() -> bool:
        return len(engine.accepted(order_id)) == 2

    await eventually(twice)
    first, second = [r["raw"] for r in engine.received]
    assert first == second
    assert json.loads(first)["tts_notification_id"] == created["notification_id"]
    log = await deliveries(http, order_id)
    assert [(d["kind"], d["response_status"]) for d in log] == [
        ("original", 200), ("duplicate", 200),
    ]  # fmt: skip


async def test_reordered_delivery_sends_an_older_event_after_the_newer(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    created = await create_order(http, reorder=True)
    order_id = created["order_id"]

    async def both() -> list[dict[str, Any]] | None:
        bodies = engine.accepted(order_id)
        return bodies if len(bodies) == 2 else None

    newer, older = await eventually(both)
    assert newer["data"]["order_status"] == "AWAITING_SHIPMENT"
    assert older["data"]["order_status"] == "UNPAID"
    assert older["data"]["update_time"] < newer["data"]["update_time"]
    assert older["tts_notification_id"] != newer["tts_notification_id"]
    assert [d["kind"] for d in await deliveries(http, order_id)] == ["original", "stale"]

    # Cancelling with reorder: the earlier AWAITING_SHIPMENT comes again after CANCELLED.
    await http.post(f"/_sandbox/tiktok/orders/{order_id}/cancel", json={"reorder": True})

    async def four() -> list[str] | None:
        statuses = accepted_statuses(engine, order_id)
        return statuses if len(statuses) == 4 else None

    assert (await eventually(four))[2:] == ["CANCELLED", "AWAITING_SHIPMENT"]
    late = engine.accepted(order_id)[3]
    assert late["tts_notification_id"] == newer["tts_notification_id"]
    assert late["data"] == newer["data"]


async def test_bad_signature_is_refused_then_the_signed_copy_arrives(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    created = await create_order(http, bad_signature=True)
    order_id = created["order_id"]

    async def accepted() -> list[dict[str, Any]]:
        return engine.accepted(order_id)

    [body] = await eventually(accepted)
    assert body["tts_notification_id"] == created["notification_id"]
    log = await deliveries(http, order_id)
    assert [(d["kind"], d["signature_ok"], d["response_status"]) for d in log] == [
        ("bad_signature", False, 401),
        ("original", True, 200),
    ]
    assert [r["status"] for r in engine.received] == [401, 200]


async def test_delivery_rates_apply_to_every_webhook(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    rates = {"duplicate_rate": 1.0, "reorder_rate": 1.0, "bad_signature_rate": 1.0}
    assert (await http.post("/_sandbox/tiktok/delivery", json=rates)).json() == rates
    assert (await http.get("/_sandbox/tiktok/delivery")).json() == rates

    created = await create_order(http)
    order_id = created["order_id"]

    async def finished() -> list[dict[str, Any]] | None:
        log = await deliveries(http, order_id)
        return log if len(log) == 4 else None

    log = await eventually(finished)
    assert [d["kind"] for d in log] == ["bad_signature", "original", "duplicate", "stale"]
    assert all(d["response_status"] == 401 for d in log if not d["signature_ok"])
    assert all(d["response_status"] == 200 for d in log if d["signature_ok"])
    assert accepted_statuses(engine, order_id) == [
        "AWAITING_SHIPMENT",
        "AWAITING_SHIPMENT",
        "UNPAID",
    ]

    (await http.post("/_sandbox/reset")).raise_for_status()
    assert (await http.get("/_sandbox/tiktok/delivery")).json() == {
        "duplicate_rate": 0.0, "reorder_rate": 0.0, "bad_signature_rate": 0.0,
    }  # fmt: skip


async def test_a_failing_engine_is_retried_and_every_attempt_logged(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    engine.fail_next = 2
    created = await create_order(http)
    order_id = created["order_id"]

    async def delivered() -> list[dict[str, Any]]:
        return engine.accepted(order_id)

    await eventually(delivered)
    log = await deliveries(http, order_id)
    assert [(d["attempt"], d["response_status"]) for d in log] == [(1, 500), (2, 500), (3, 200)]


async def test_a_delayed_creation_arrives_after_its_cancellation(
    http: httpx.AsyncClient, engine: EngineStandIn
) -> None:
    created = await create_order(http, delay_ms=300)
    order_id = created["order_id"]
    await http.post(f"/_sandbox/tiktok/orders/{order_id}/cancel")

    async def both() -> list[str] | None:
        statuses = accepted_statuses(engine, order_id)
        return statuses if len(statuses) == 2 else None

    assert await eventually(both) == ["CANCELLED", "AWAITING_SHIPMENT"]


async def test_control_validates_the_order(http: httpx.AsyncClient) -> None:
    for bad in (
        {**ORDER, "items": []},
        {**ORDER, "items": [{"sku": "MUG-1", "quantity": 0, "price": 100}]},
        {**ORDER, "address": {**ADDRESS, "country": "USA"}},
        {key: value for key, value in ORDER.items() if key != "shop_id"},
    ):
        assert (await http.post("/_sandbox/tiktok/orders", json=bad)).status_code == 422
