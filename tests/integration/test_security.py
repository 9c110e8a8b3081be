"""Attacks on the running stack: a forged payment signal sent around the codec with the
``temporal`` CLI, and what a finished run's raw history holds (ciphertext only)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.services import find_temporal_cli
from fulfil.codec import ENCODING
from tests.integration.support import eventually
from tests.integration.test_order_placement import (
    PAID,
    intents_for,
    order_when,
    place,
    sandbox_ledger,
    shop,  # noqa: F401 - the fixture
)
from tests.integration.test_shipping import labelled

pytestmark = pytest.mark.integration


def payloads(message: Message, path: str = "") -> list[tuple[str, Payload]]:
    """Every Payload inside a protobuf message, with where it was found."""
    found: list[tuple[str, Payload]] = []
    if isinstance(message, Payload):
        return [(path, message)]
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.message_type is None:
            continue
        if field.is_repeated:
            if field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if isinstance(item, Message):
                        found += payloads(item, f"{where}[{key}]")
            else:
                for index, item in enumerate(value):
                    found += payloads(item, f"{where}[{index}]")
        else:
            found += payloads(value, where)
    return found


async def test_a_forged_plain_signal_cannot_pay_an_order(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    shop: dict[str, Any],  # noqa: F811
    temporal: WorkflowEnvironment,
) -> None:
    """Finding: `temporal workflow signal` with plain JSON made an unpaid order paid."""
    api, sandbox = engine["api"], engine["sandbox"]
    response = await place(http, api, shop, payment_method="pm_card_authenticationRequired")
    order_id = response.json()["order_id"]

    async def waiting_for_3ds() -> str | None:
        order = (await http.get(f"{api}/api/v1/orders/{order_id}", headers=shop["headers"])).json()
        payment = order["payment"]
        return (
            str(payment["payment_intent_id"])
            if payment and payment["status"] == "requires_action"
            else None
        )

    intent_id = await eventually(waiting_for_3ds)
    address = temporal.client.service_client.config.target_host
    forged = await asyncio.create_subprocess_exec(
        find_temporal_cli(), "workflow", "signal", "--address", address,
        "--workflow-id", f"order-{order_id}", "--name", "payment_succeeded",
        "--input", json.dumps({"payment_intent_id": intent_id, "charge_id": None}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(forged.communicate(), timeout=30)
    assert forged.returncode == 0, stderr  # Temporal took it: the worker must refuse it

    # The run reads the signal (a workflow task completes after it) and changes nothing.
    client: Client = temporal.client
    handle = client.get_workflow_handle(f"order-{order_id}")

    async def signal_handled() -> bool:
        history = await handle.fetch_history()
        events = list(history.events)
        signalled = [
            e.event_id for e in events if e.HasField("workflow_execution_signaled_event_attributes")
        ]
        done = [
            e.event_id for e in events if e.HasField("workflow_task_completed_event_attributes")
        ]
        return bool(signalled) and max(done, default=0) > max(signalled)

    await eventually(signal_handled)
    order = (await http.get(f"{api}/api/v1/orders/{order_id}", headers=shop["headers"])).json()
    assert order["status"] == "awaiting_payment"
    [intent] = intents_for(await sandbox_ledger(http, sandbox), order_id)
    assert intent["status"] == "requires_action"

    # The real authentication still completes the order: the run is not wedged.
    authenticated = await http.post(
        f"{sandbox}/_sandbox/stripe/payment_intents/{intent_id}/authenticate"
    )
    assert authenticated.status_code == 200, authenticated.text
    await order_when(http, api, shop, order_id, PAID)


async def test_a_finished_runs_raw_history_holds_only_ciphertext(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    shop: dict[str, Any],  # noqa: F811
    temporal: WorkflowEnvironment,
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    response = await place(http, api, shop)
    order_id = response.json()["order_id"]
    await labelled(http, api, shop, order_id)
    await http.post(f"{sandbox}/_sandbox/clock/advance", json={"seconds": 2 * 3600})
    await order_when(http, api, shop, order_id, {"shipped"})
    await http.post(f"{sandbox}/_sandbox/clock/advance", json={"seconds": 7 * 86400})
    await order_when(http, api, shop, order_id, {"delivered"})

    # A client without the codec sees the history exactly as the server stores it.
    address = temporal.client.service_client.config.target_host
    raw = await Client.connect(address, namespace=temporal.client.namespace)
    checked = 0
    for workflow_id in (f"order-{order_id}", f"shipment-{order_id}"):
        handle = raw.get_workflow_handle(workflow_id)
        await eventually(lambda h=handle: _closed(h), timeout=60)
        history = await handle.fetch_history()
        for event in history.events:
            for where, payload in payloads(event):
                if "search_attributes" in where:
                    continue  # indexed by the server: ids and statuses, never secrets
                if "marker_recorded_event_attributes.details[patch-data]" in where:
                    # Written by the SDK's core for workflow.patched: the patch's name only.
                    assert b"deprecated" in payload.data
                    continue
                encoding = payload.metadata.get("encoding", b"")
                assert encoding == ENCODING, (
                    f"{workflow_id} event {event.event_id}{where}: {encoding!r}"
                )
                assert b"ada@example.com" not in payload.data
                checked += 1
    assert checked > 20


async def _closed(handle: Any) -> bool:
    description = await handle.describe()
    return description.close_time is not None
