"""The Shippo stand-in, driven through the official shippo SDK and the control API.

The SDK is synchronous: every call runs in a thread (``sdk(...)``). The
sandbox here has its own server with a stopped clock (``SANDBOX_CLOCK_PACE=0``),
so parcels move only when a test advances the clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import pytest
import shippo
from shippo import utils as shippo_utils
from shippo.models import components, errors, operations

from sandbox.shippo_api import SERVICE_LEVELS, billable_pounds
from sandbox.state import SandboxClock
from tests.sandbox.conftest import Sandbox, eventually
from tests.sandbox.conftest import serve_sandbox as serve_any_sandbox

T = TypeVar("T")

# The SDK must parse every answer without a warning (dataclasses_json warns on bad values).
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

WEBHOOK_TOKEN = "shippo_sandbox_tests_token"
ENGINE_HOOK = "engine/webhooks/shippo"  # {api_base}/webhooks/shippo lands in this recorder
HOUR = 3600
DAY = 86_400


@contextmanager
def serve_sandbox(pace: float) -> Iterator[Sandbox]:
    with serve_any_sandbox(shippo_webhook_token=WEBHOOK_TOKEN, sandbox_clock_pace=pace) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def shippo_sandbox() -> Iterator[Sandbox]:
    with serve_sandbox(pace=0) as sandbox:
        yield sandbox


@pytest.fixture
async def http(shippo_sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """Control client of a freshly reset sandbox."""
    async with httpx.AsyncClient(base_url=shippo_sandbox.base_url, timeout=10) as client:
        (await client.post("/_sandbox/reset")).raise_for_status()
        yield client


def make_client(base_url: str) -> shippo.Shippo:
    return shippo.Shippo(
        api_key_header="ShippoToken shippo_test_sandbox", server_url=f"{base_url}/shippo"
    )


@pytest.fixture
def client(shippo_sandbox: Sandbox, http: httpx.AsyncClient) -> shippo.Shippo:
    return make_client(shippo_sandbox.base_url)


async def sdk(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(call, *args)


def address(
    name: str = "Ada Lovelace", street1: str = "1 Main St"
) -> components.AddressCreateRequest:
    return components.AddressCreateRequest(
        name=name, street1=street1, city="San Francisco", state="CA", zip="94107", country="US"
    )


def shipment_request(
    *, weight: str = "1500", mass_unit: str = "g", street1: str = "1 Main St"
) -> components.ShipmentCreateRequest:
    return components.ShipmentCreateRequest(
        address_from=components.AddressCreateRequest(
            name="Candle Shop", street1="215 Clayton St", city="San Francisco", state="CA",
            zip="94117", country="US",
        ),
        address_to=address(street1=street1),
        parcels=[
            components.ParcelCreateRequest(
                mass_unit=components.WeightUnitEnum(mass_unit), weight=weight,
                distance_unit=components.DistanceUnitEnum.CM, length="30", width="20", height="10",
            )
        ],
        metadata="order:ord_1",
        async_=False,
    )  # fmt: skip


def rate_for(shipment: components.Shipment, token: str) -> components.Rate:
    return next(r for r in shipment.rates if r.servicelevel.token == token)


async def buy(
    client: shippo.Shippo, shipment: components.Shipment, token: str, order: str = "ord_1"
) -> components.Transaction:
    return await sdk(
        client.transactions.create,
        components.TransactionCreateRequest(
            rate=rate_for(shipment, token).object_id,
            label_file_type=components.LabelFileTypeEnum.PDF_4X6,
            metadata=f"order:{order}",
            async_=False,
        ),
    )


async def ledger(http: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    response = await http.get("/_sandbox/ledger")
    response.raise_for_status()
    book: dict[str, list[dict[str, Any]]] = response.json()
    return book


async def advance(http: httpx.AsyncClient, seconds: float) -> None:
    (await http.post("/_sandbox/clock/advance", json={"seconds": seconds})).raise_for_status()


async def track_webhooks(
    http: httpx.AsyncClient,
) -> list[tuple[str, components.WebhookPayloadTrack]]:
    """``(query, payload)`` of every webhook the engine stand-in received, parsed by the SDK."""
    calls = (await http.get(f"/_sandbox/hooks/{ENGINE_HOOK}")).json()
    return [
        (c["query"], shippo_utils.unmarshal_json(c["body"], components.WebhookPayloadTrack))
        for c in calls
    ]


async def webhook_statuses(http: httpx.AsyncClient, tracking_number: str) -> list[str]:
    """The statuses the webhooks of ``tracking_number`` told, in sandbox time order."""
    moves = []
    for _, payload in await track_webhooks(http):
        track = payload.data
        if track is None or track.tracking_number != tracking_number:
            continue
        assert track.tracking_status is not None
        assert track.tracking_status.status_date is not None
        moves.append((track.tracking_status.status_date, track.tracking_status.status.value))
    return [status for _, status in sorted(moves)]


async def tracking_status(client: shippo.Shippo, carrier: str, number: str) -> str:
    track = await sdk(client.tracking_status.get, number, carrier)
    assert track.tracking_status is not None
    return str(track.tracking_status.status.value)


# -------------------------------------------------------------------- rates


async def test_shipment_rates_are_priced_by_billable_weight(client: shippo.Shippo) -> None:
    shipment = await sdk(client.shipments.create, shipment_request(weight="1500", mass_unit="g"))

    assert shipment.status == components.ShipmentStatus.SUCCESS
    assert shipment.metadata == "order:ord_1"
    assert shipment.address_to.street1 == "1 Main St"
    assert shipment.parcels[0].weight == "1500"
    # 1500 g = 3.31 lb → 4 billable pounds: first pound + 3 further pounds.
    amounts = {r.servicelevel.token: r.amount for r in shipment.rates}
    assert amounts == {
        "usps_ground_advantage": "7.95",
        "usps_priority": "11.63",
        "ups_ground": "12.42",
        "fedex_2_day": "24.60",
        "ups_next_day_air": "44.50",
    }
    for rate in shipment.rates:
        assert rate.object_id
        assert rate.shipment == shipment.object_id
        assert rate.currency == "USD"
        assert rate.amount_local == rate.amount
        assert rate.servicelevel.name
        assert rate.estimated_days is not None
        assert rate.duration_terms
        assert rate.provider in {"USPS", "UPS", "FedEx"}
    cheapest = min(shipment.rates, key=lambda r: float(r.amount))
    fastest = min(shipment.rates, key=lambda r: r.estimated_days or 99)
    assert cheapest.servicelevel.token == "usps_ground_advantage"
    assert components.Attributes.CHEAPEST in cheapest.attributes
    assert fastest.servicelevel.token == "ups_next_day_air"
    assert fastest.estimated_days == 1
    assert components.Attributes.FASTEST in fastest.attributes
    assert {r.servicelevel.token: r.estimated_days for r in shipment.rates} == {
        "usps_ground_advantage": 5, "usps_priority": 3, "ups_ground": 4, "fedex_2_day": 2,
        "ups_next_day_air": 1,
    }  # fmt: skip

    fetched = await sdk(client.shipments.get, shipment.object_id)
    assert [r.object_id for r in fetched.rates] == [r.object_id for r in shipment.rates]
    listed = await sdk(client.rates.list_shipment_rates, shipment.object_id)
    assert [r.object_id for r in listed.results or []] == [r.object_id for r in shipment.rates]
    in_usd = await sdk(
        client.rates.list_shipment_rates_by_currency_code,
        operations.ListShipmentRatesByCurrencyCodeRequest(
            shipment_id=shipment.object_id, currency_code="USD"
        ),
    )
    assert len(in_usd.results or []) == len(SERVICE_LEVELS)
    rate = await sdk(client.rates.get, cheapest.object_id)
    assert rate.amount == "7.95"


@pytest.mark.parametrize(
    ("weight", "unit", "pounds"),
    [("1", "oz", 1), ("16", "oz", 1), ("17", "oz", 2), ("1", "kg", 3), ("2", "lb", 2)],
)
async def test_billable_weight_rounds_up_to_whole_pounds(
    client: shippo.Shippo, weight: str, unit: str, pounds: int
) -> None:
    shipment = await sdk(client.shipments.create, shipment_request(weight=weight, mass_unit=unit))
    cheapest = rate_for(shipment, "usps_ground_advantage")
    level = SERVICE_LEVELS[0]
    assert cheapest.amount == str(level.amount(pounds).quantize(level.first_pound))


def test_billable_pounds_is_at_least_one() -> None:
    from decimal import Decimal

    assert billable_pounds(Decimal("0.01")) == 1
    assert billable_pounds(Decimal("1.0")) == 1
    assert billable_pounds(Decimal("1.01")) == 2


# ------------------------------------------------------------------- labels


async def test_buying_the_same_rate_twice_returns_the_same_label(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    shipment = await sdk(client.shipments.create, shipment_request())
    first = await buy(client, shipment, "usps_priority")
    again = await buy(client, shipment, "usps_priority")

    assert first.status == components.TransactionStatusEnum.SUCCESS
    assert first.object_state == components.ObjectStateEnum.VALID
    assert first.tracking_number
    assert first.tracking_number.startswith("9205")
    assert first.tracking_url_provider
    assert first.tracking_number in first.tracking_url_provider
    assert first.rate == rate_for(shipment, "usps_priority").object_id
    assert first.metadata == "order:ord_1"
    assert first.tracking_status == components.TrackingStatusEnum.PRE_TRANSIT
    assert again.object_id == first.object_id
    assert again.tracking_number == first.tracking_number
    fetched = await sdk(client.transactions.get, first.object_id)
    assert fetched.tracking_number == first.tracking_number

    [label] = (await ledger(http))["labels"]
    assert label["id"] == first.object_id
    assert label["status"] == "SUCCESS"
    assert label["metadata"] == "order:ord_1"
    assert label["carrier"] == "usps"
    assert label["servicelevel"] == "usps_priority"
    assert label["amount"] == "11.63"
    assert label["currency"] == "USD"
    assert label["tracking_number"] == first.tracking_number
    assert label["rate"] == first.rate
    assert label["created"].endswith("Z")

    # Another order's label is a second entry.
    other = await sdk(client.shipments.create, shipment_request())
    await buy(client, other, "ups_ground", order="ord_2")
    labels = (await ledger(http))["labels"]
    assert [entry["metadata"] for entry in labels] == ["order:ord_1", "order:ord_2"]
    assert labels[1]["tracking_number"].startswith("1Z")

    assert first.label_url is not None
    label_file = await http.get(first.label_url)
    assert label_file.status_code == 200
    assert label_file.headers["content-type"] == "application/pdf"
    assert label_file.content.startswith(b"%PDF-")


async def test_instalabel_buys_in_one_call(client: shippo.Shippo, http: httpx.AsyncClient) -> None:
    request = components.InstantTransactionCreateRequest(
        shipment=shipment_request(),
        carrier_account="any",
        servicelevel_token="fedex_2_day",
        metadata="order:ord_9",
    )
    transaction = await sdk(client.transactions.create, request)
    assert transaction.status == components.TransactionStatusEnum.SUCCESS
    assert isinstance(transaction.rate, components.CoreRate)
    assert transaction.rate.servicelevel_token == "fedex_2_day"
    assert transaction.rate.provider == "FedEx"
    [label] = (await ledger(http))["labels"]
    assert label["carrier"] == "fedex"
    assert label["metadata"] == "order:ord_9"


async def test_errors_are_shaped_like_shippos(
    client: shippo.Shippo, http: httpx.AsyncClient, shippo_sandbox: Sandbox
) -> None:
    with pytest.raises(errors.SDKError) as missing_rate:
        await sdk(client.transactions.create, components.TransactionCreateRequest(rate="0" * 32))
    assert missing_rate.value.status_code == 400
    assert "rate" in json.loads(missing_rate.value.body)
    with pytest.raises(errors.SDKError) as missing_shipment:
        await sdk(client.shipments.get, "0" * 32)
    assert missing_shipment.value.status_code == 404
    assert json.loads(missing_shipment.value.body) == {"detail": "Not found."}
    with pytest.raises(errors.SDKError) as bad_carrier:
        await sdk(client.tracking_status.get, "123", "pigeon")
    assert bad_carrier.value.status_code == 400

    no_address = await http.post(
        "/shippo/shipments",
        json={"address_from": {"country": "US"}, "parcels": []},
        headers={"Authorization": "ShippoToken k"},
    )
    assert no_address.status_code == 400
    assert "address_to" in no_address.json()
    no_token = await http.post("/shippo/shipments", json={})
    assert no_token.status_code == 401
    bearer = await http.get("/shippo/shipments/x", headers={"Authorization": "Bearer k"})
    assert bearer.status_code == 401
    assert bearer.json() == {"detail": "Invalid token."}
    assert (await ledger(http))["labels"] == []


async def test_injected_fault_on_label_purchase_buys_nothing(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    shipment = await sdk(client.shipments.create, shipment_request())
    fault = await http.post(
        "/_sandbox/faults",
        json={"provider": "shippo", "method": "POST", "path": "/transactions", "status": 503,
              "times": 1},
    )  # fmt: skip
    assert fault.status_code == 201
    with pytest.raises(errors.SDKError) as raised:
        await buy(client, shipment, "usps_priority")
    assert raised.value.status_code == 503
    assert "detail" in json.loads(raised.value.body)
    assert (await ledger(http))["labels"] == []
    transaction = await buy(client, shipment, "usps_priority")
    assert transaction.status == components.TransactionStatusEnum.SUCCESS


# ------------------------------------------------------------------ refunds


async def test_refund_of_an_unused_label_succeeds_once_and_stops_the_parcel(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    shipment = await sdk(client.shipments.create, shipment_request())
    label = await buy(client, shipment, "usps_priority")
    assert label.object_id
    assert label.tracking_number

    refund = await sdk(client.refunds.create, label.object_id, False)
    again = await sdk(client.refunds.create, label.object_id)

    assert refund.status == components.RefundStatus.SUCCESS
    assert refund.transaction == label.object_id
    assert again.object_id == refund.object_id
    assert (await sdk(client.refunds.get, refund.object_id)).status == refund.status
    voided = await sdk(client.transactions.get, label.object_id)
    assert voided.status == components.TransactionStatusEnum.REFUNDED
    book = await ledger(http)
    [entry] = book["label_refunds"]
    assert entry["id"] == refund.object_id
    assert entry["status"] == "SUCCESS"
    assert entry["transaction"] == label.object_id
    assert entry["metadata"] == "order:ord_1"
    assert entry["amount"] == "11.63"
    assert book["labels"][0]["status"] == "REFUNDED"

    # A refunded label never moves.
    await advance(http, 10 * DAY)
    assert await tracking_status(client, "usps", label.tracking_number) == "PRE_TRANSIT"
    log = (await http.get("/_sandbox/shippo/webhooks")).json()
    assert [w["status"] for w in log] == ["PRE_TRANSIT"]


async def test_refund_of_a_label_in_transit_is_rejected(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    shipment = await sdk(client.shipments.create, shipment_request())
    label = await buy(client, shipment, "ups_next_day_air")
    assert label.object_id
    assert label.tracking_number
    await advance(http, HOUR)

    refund = await sdk(client.refunds.create, label.object_id)

    assert refund.status == components.RefundStatus.ERROR
    transaction = await sdk(client.transactions.get, label.object_id)
    assert transaction.status == components.TransactionStatusEnum.REFUNDREJECTED
    [entry] = (await ledger(http))["label_refunds"]
    assert entry["status"] == "ERROR"
    await advance(http, DAY)
    assert await tracking_status(client, "ups", label.tracking_number) == "DELIVERED"


# ----------------------------------------------------------------- tracking


async def test_parcel_moves_with_the_clock_and_each_move_is_a_webhook(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    shipment = await sdk(client.shipments.create, shipment_request())
    label = await buy(client, shipment, "usps_priority")  # 3 days
    number = label.tracking_number
    assert number

    async def statuses_received(expected: list[str]) -> bool:
        return await webhook_statuses(http, number) == expected

    track = await sdk(client.tracking_status.get, number, "usps")
    assert track.carrier == "usps"
    assert track.tracking_number == number
    assert track.transaction == label.object_id
    assert track.tracking_status is not None
    assert track.tracking_status.status == components.TrackingStatusEnum.PRE_TRANSIT
    assert track.tracking_status.substatus is not None
    assert track.servicelevel is not None
    assert track.servicelevel.token == "usps_priority"
    assert track.eta is not None
    await eventually(lambda: statuses_received(["PRE_TRANSIT"]))

    await advance(http, HOUR - 1)
    assert await tracking_status(client, "usps", number) == "PRE_TRANSIT"
    await advance(http, 1)
    assert await tracking_status(client, "usps", number) == "TRANSIT"
    await eventually(lambda: statuses_received(["PRE_TRANSIT", "TRANSIT"]))

    await advance(http, 3 * DAY - HOUR - 1)
    assert await tracking_status(client, "USPS", number) == "TRANSIT"  # carrier: any case
    await advance(http, 1)
    delivered = await sdk(client.tracking_status.get, number, "usps")
    assert delivered.tracking_status is not None
    assert delivered.tracking_status.status == components.TrackingStatusEnum.DELIVERED
    assert [s.status.value for s in delivered.tracking_history] == [
        "PRE_TRANSIT", "TRANSIT", "DELIVERED",
    ]  # fmt: skip
    dates = [s.status_date for s in delivered.tracking_history]
    assert dates == sorted(dates)
    assert delivered.tracking_status.status_date == delivered.eta
    await eventually(lambda: statuses_received(["PRE_TRANSIT", "TRANSIT", "DELIVERED"]))

    for query, payload in await track_webhooks(http):
        assert query == f"token={WEBHOOK_TOKEN}"
        assert payload.event == components.WebhookEventTypeEnum.TRACK_UPDATED
        assert payload.test is True
    [label_entry] = (await ledger(http))["labels"]
    assert label_entry["tracking_status"] == "DELIVERED"
    assert (await sdk(client.transactions.get, label.object_id)).tracking_status == (
        components.TrackingStatusEnum.DELIVERED
    )
    # Further time changes nothing.
    await advance(http, 30 * DAY)
    assert len((await http.get("/_sandbox/shippo/webhooks")).json()) == 3


async def test_one_big_advance_sends_every_move(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    shipment = await sdk(client.shipments.create, shipment_request())
    label = await buy(client, shipment, "ups_next_day_air")  # 1 day
    assert label.tracking_number
    await advance(http, 2 * DAY)
    log = (await http.get("/_sandbox/shippo/webhooks")).json()
    assert [w["status"] for w in log] == ["PRE_TRANSIT", "TRANSIT", "DELIVERED"]
    assert all(w["dropped"] is False and w["delivery_id"] for w in log)

    async def all_three() -> bool:
        return len(await webhook_statuses(http, label.tracking_number or "")) == 3

    await eventually(all_three)


@pytest.mark.parametrize(
    ("street1", "final"),
    [
        ("RETURN TO SENDER", "RETURNED"),
        ("12 Undeliverable Lane", "FAILURE"),
        ("1 Main", "DELIVERED"),
    ],
)
async def test_the_ship_to_street_decides_how_the_parcel_ends(
    client: shippo.Shippo, http: httpx.AsyncClient, street1: str, final: str
) -> None:
    shipment = await sdk(client.shipments.create, shipment_request(street1=street1))
    label = await buy(client, shipment, "fedex_2_day")
    assert label.tracking_number
    await advance(http, 2 * DAY - 1)
    assert await tracking_status(client, "fedex", label.tracking_number) == "TRANSIT"
    await advance(http, 1)
    assert await tracking_status(client, "fedex", label.tracking_number) == final
    [entry] = (await ledger(http))["labels"]
    assert entry["final_status"] == final


async def test_dropped_webhooks_are_logged_but_never_sent(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    dropping = await http.post("/_sandbox/shippo/drop_webhooks", json={"enabled": True})
    assert dropping.json() == {"drop_webhooks": True}
    shipment = await sdk(client.shipments.create, shipment_request())
    lost = await buy(client, shipment, "ups_next_day_air")
    await advance(http, DAY)
    # Polling still sees the truth.
    assert await tracking_status(client, "ups", lost.tracking_number or "") == "DELIVERED"
    log = (await http.get("/_sandbox/shippo/webhooks")).json()
    assert [(w["status"], w["dropped"], w["delivery_id"]) for w in log] == [
        ("PRE_TRANSIT", True, None), ("TRANSIT", True, None), ("DELIVERED", True, None),
    ]  # fmt: skip

    restored = await http.post("/_sandbox/shippo/drop_webhooks", json={"enabled": False})
    assert restored.json() == {"drop_webhooks": False}
    other = await sdk(client.shipments.create, shipment_request())
    sentinel = await buy(client, other, "usps_priority")

    async def sentinel_arrived() -> bool:
        return bool(await webhook_statuses(http, sentinel.tracking_number or ""))

    await eventually(sentinel_arrived)
    received = {p.data.tracking_number for _, p in await track_webhooks(http) if p.data}
    assert received == {sentinel.tracking_number}


async def test_track_registration_and_shippo_test_numbers(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    registered = await sdk(client.tracking_status.create, "shippo", "SHIPPO_TRANSIT", "order:ord_5")
    assert registered.tracking_status is not None
    assert registered.tracking_status.status == components.TrackingStatusEnum.TRANSIT
    assert registered.metadata == "order:ord_5"

    async def test_webhook() -> bool:
        return await webhook_statuses(http, "SHIPPO_TRANSIT") == ["TRANSIT"]

    await eventually(test_webhook)
    for status in ("PRE_TRANSIT", "DELIVERED", "RETURNED", "FAILURE", "UNKNOWN"):
        assert await tracking_status(client, "shippo", f"SHIPPO_{status}") == status
    assert await tracking_status(client, "usps", "9400100000000000000000") == "UNKNOWN"

    shipment = await sdk(client.shipments.create, shipment_request())
    label = await buy(client, shipment, "usps_ground_advantage")
    assert label.tracking_number
    track = await sdk(client.tracking_status.create, "usps", label.tracking_number, "order:ord_1")
    assert track.transaction == label.object_id
    assert track.tracking_status is not None
    assert track.tracking_status.status == components.TrackingStatusEnum.PRE_TRANSIT


async def test_reset_forgets_labels_and_the_drop_flag(
    client: shippo.Shippo, http: httpx.AsyncClient
) -> None:
    await http.post("/_sandbox/shippo/drop_webhooks", json={"enabled": True})
    shipment = await sdk(client.shipments.create, shipment_request())
    label = await buy(client, shipment, "usps_priority")
    (await http.post("/_sandbox/reset")).raise_for_status()

    assert (await ledger(http))["labels"] == []
    assert (await http.get("/_sandbox/shippo/webhooks")).json() == []
    assert await tracking_status(client, "usps", label.tracking_number or "") == "UNKNOWN"
    with pytest.raises(errors.SDKError):
        await sdk(client.transactions.get, label.object_id)


# ------------------------------------------------------------ clock pace


async def test_clock_pace_scales_real_time() -> None:
    real = [1000.0]
    stopped = SandboxClock(pace=0, real_time=lambda: real[0])
    paced = SandboxClock(pace=60, real_time=lambda: real[0])
    real[0] += 10

    assert stopped.now() == 1000.0
    assert paced.now() == 1000.0 + 600
    await paced.advance(30)
    assert paced.now() == 1000.0 + 630
    assert paced.offset_seconds == 30
    paced.reset()
    assert paced.now() == real[0]
    with pytest.raises(ValueError, match="negative"):
        SandboxClock(pace=-1)


async def test_with_a_pace_parcels_move_in_real_time() -> None:
    """Two sandbox days per real second: next-day air is delivered within about a second."""
    with serve_sandbox(pace=2 * DAY) as sandbox:
        client = make_client(sandbox.base_url)
        async with httpx.AsyncClient(base_url=sandbox.base_url, timeout=10) as http:
            shipment = await sdk(client.shipments.create, shipment_request())
            label = await buy(client, shipment, "ups_next_day_air")
            started = time.monotonic()

            async def delivered() -> bool:
                return "DELIVERED" in await webhook_statuses(http, label.tracking_number or "")

            await eventually(delivered, within=10)
            assert time.monotonic() - started < 5
            assert await webhook_statuses(http, label.tracking_number or "") == [
                "PRE_TRANSIT", "TRANSIT", "DELIVERED",
            ]  # fmt: skip
            clock = (await http.get("/_sandbox/clock")).json()
            assert clock["offset_seconds"] == 0
            assert clock["pace"] == 2 * DAY
