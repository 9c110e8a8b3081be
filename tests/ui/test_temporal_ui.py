"""Ops read our runs in the Temporal UI decrypted, through the API's codec endpoint.

Payloads, static summaries and failure messages leave the worker AES-GCM encrypted
(``fulfil.codec``); the UI shows them only by calling ``POST {api}/codec/decode`` from the
browser. Without that endpoint it shows base64 (and "Encoded failure"), and the page
assertions here fail.

The stack is the integration one, but its own: a database, the sandbox, the API, the worker
and a Temporal dev server started the way ``make run`` starts it (``start_temporal``: the UI
on the gRPC port + 1000, ``--ui-codec-endpoint``). The API lets the UI's origin decode
without a key (``CODEC_OPEN_TO_UI``, dev only). A real browser, Debian's Chromium driven by
Playwright, reads the pages; full-page screenshots go to ``.data/screenshots/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from temporalio.client import Client

from db.outbox import OutboxRelay
from devstack.harness import loopback_socket, serve_in_thread
from devstack.services import find_temporal_cli
from devstack.supervisor import Child
from devstack.temporal_server import (
    ensure_search_attributes,
    start_temporal,
    temporal_answers_async,
    temporal_ui_url,
)
from fulfil.ids import order_workflow_id
from fulfil.money import format_money
from fulfil.settings import Settings
from fulfil.temporal import connect
from tests.conftest import ROOT, free_port, fresh_database
from tests.integration.support import create_merchant, eventually
from tests.integration.test_order_placement import SHIP_FROM, order_when, place
from worker import build_workers, open_resources

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium is not installed: apt-get install chromium (.ci/run installs it)",
        allow_module_level=True,
    )

SCREENSHOTS = ROOT / ".data" / "screenshots"
SHOP = "Lantern & Wick"
SKU = "CANDLE-FIG"
PAID = {"paid", "fulfilling", "shipped", "delivered"}
# What the UI may take to show what Temporal already has: page load, history, codec calls.
UI_TIMEOUT_MS = 20_000


@dataclass(frozen=True)
class Stack:
    api: str
    ui: str
    client: Client
    ops_headers: dict[str, str]


def _temporal_port() -> int:
    """A free gRPC port whose UI port (+ 1000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 1000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for Temporal and its UI")


async def _until_answers(address: str, temporal: Child, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await temporal_answers_async(address, wait_seconds=1.0):
        if temporal.returncode() is not None:
            raise RuntimeError(f"temporal exited ({temporal.returncode()}): {temporal.log_path}")
        if loop.time() > deadline:
            raise RuntimeError(f"temporal did not answer on {address} in {timeout:.0f}s")
        await asyncio.sleep(0.2)


def _stack_settings(
    settings: Settings, *, database_url: str, address: str, ui: str, api: str, sandbox: str
) -> Settings:
    return settings.model_copy(
        update={
            "database_url": database_url,
            "temporal_address": address,
            "temporal_ui_url": ui,
            "api_base": api,
            "sandbox_base": sandbox,
            "stripe_api_base": f"{sandbox}/stripe",
            "shippo_api_base": f"{sandbox}/shippo",
            "tiktok_api_base": f"{sandbox}/tiktok",
            "cloudflare_api_base": f"{sandbox}/cloudflare/client/v4",
            "email_api_base": f"{sandbox}/email",
            "cloudflare_check_base": f"{sandbox}/_sandbox/cloudflare/hosts",
            "webhook_url_allowlist": f"{sandbox}/_sandbox/hooks/",
            "task_queue": f"test-ui-{uuid.uuid4().hex[:8]}",
            # The browser calls the codec from the UI's origin, with no key (dev only).
            "codec_cors_origins": ui,
            "codec_open_to_ui": True,
        }
    )


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """Temporal with its UI, and an engine of its own (database, sandbox, API, worker): the
    session's worker relays the shared database's outbox to the session's Temporal."""
    cli = find_temporal_cli()
    address = f"127.0.0.1:{_temporal_port()}"
    ui = temporal_ui_url(address)
    api_socket, sandbox_socket = loopback_socket(), loopback_socket()
    api = f"http://127.0.0.1:{api_socket.getsockname()[1]}"
    sandbox = f"http://127.0.0.1:{sandbox_socket.getsockname()[1]}"
    server_dir = tmp_path_factory.mktemp("temporal-ui")
    # It boots while the database is created and migrated.
    temporal = start_temporal(
        cli,
        address,
        db_file=server_dir / "temporal.db",
        log_dir=server_dir,
        codec_endpoint=f"{api}/codec",
    )
    try:
        with fresh_database("fulfil_ui_test") as database_url:
            stack_settings = _stack_settings(
                settings, database_url=database_url, address=address, ui=ui, api=api,
                sandbox=sandbox,
            )  # fmt: skip
            await _until_answers(address, temporal)
            await asyncio.to_thread(ensure_search_attributes, cli, address)
            client = await connect(stack_settings)
            from api.app import create_app as create_api
            from sandbox.app import create_app as create_sandbox

            with (
                serve_in_thread(create_sandbox(stack_settings), sandbox_socket),
                serve_in_thread(create_api(stack_settings), api_socket, startup_timeout=30),
            ):
                async with open_resources(stack_settings) as resources:
                    stop = asyncio.Event()

                    async def provider() -> Client:
                        return client

                    relay = OutboxRelay(resources.sessionmaker, provider, stack_settings.task_queue)
                    async with contextlib.AsyncExitStack() as running:
                        for one in build_workers(client, stack_settings, resources):
                            await running.enter_async_context(one)
                        relaying = asyncio.create_task(
                            relay.run(stack_settings.outbox_relay_interval_seconds, stop)
                        )
                        try:
                            yield Stack(
                                api=api,
                                ui=ui,
                                client=client,
                                ops_headers={
                                    "Authorization": f"Bearer {stack_settings.ops_api_key}"
                                },
                            )
                        finally:
                            stop.set()
                            await relaying
    finally:
        temporal.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    # Wide: at 1440 px the event history's details column is cut off.
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    yield await context.new_page()
    await context.close()


async def _shop(http: httpx.AsyncClient, stack: Stack) -> dict[str, Any]:
    merchant = await create_merchant(
        http, stack.api, stack.ops_headers, name=SHOP, ship_from=SHIP_FROM
    )
    response = await http.post(
        f"{stack.api}/api/v1/products",
        json={"sku": SKU, "name": "Fig candle", "price": 1800, "currency": "USD", "stock": 10},
        headers=merchant["headers"],
    )
    assert response.status_code == 201, response.text
    return merchant


async def _screenshot(page: Page, name: str) -> None:
    """``full_page`` gets the window only: the run pages scroll inside their main pane, so
    what a screenshot is for is brought into view first."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / name, full_page=True)


async def test_the_ui_shows_our_runs_decoded_through_our_codec(stack: Stack, page: Page) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        shop = await _shop(http, stack)
        items = [{"sku": SKU, "quantity": 1}]
        placed = await place(http, stack.api, shop, items=items)
        refused = await place(
            http, stack.api, shop, items=items, payment_method="pm_card_chargeDeclined"
        )
        assert placed.status_code == refused.status_code == 202, (placed.text, refused.text)
        paid_id, declined_id = placed.json()["order_id"], refused.json()["order_id"]
        paid = await order_when(http, stack.api, shop, paid_id, PAID)
        await order_when(http, stack.api, shop, declined_id, {"failed"})
    paid_wf, declined_wf = order_workflow_id(paid_id), order_workflow_id(declined_id)
    runs = f"{stack.ui}/namespaces/default/workflows"

    # 1. The runs list filtered by a search attribute: the declined order, not the paid one.
    query = 'OrderStatus="failed"'

    async def visible_as_failed() -> list[str]:
        return [run.id async for run in stack.client.list_workflows(query) if run.id == declined_wf]

    await eventually(visible_as_failed, timeout=15)  # visibility trails the history
    await page.goto(f"{runs}?query={quote(query)}")
    await expect(page.get_by_role("link", name=declined_wf)).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_role("link", name=paid_wf)).to_have_count(0)
    await _screenshot(page, "temporal-ui-1-failed-orders.png")

    # 2. The paid order: its input and static summary decrypted, not base64.
    paid_run = (await stack.client.get_workflow_handle(paid_wf).describe()).run_id
    async with page.expect_response(
        lambda response: "/codec/decode" in response.url, timeout=UI_TIMEOUT_MS
    ) as decoding:
        # Oldest first: the start event, which carries the summary, sits under the input.
        await page.goto(f"{runs}/{paid_wf}/{paid_run}/history?sort=ascending")
    answer = await decoding.value
    # (Not its body: Playwright may never hand over the body of a response the page refused.)
    assert answer.ok, f"the codec refused the UI's call: {answer.status} POST {answer.url}"
    await expect(page.get_by_role("textbox", name="Input")).to_contain_text(
        f'"order_id": "{paid_id}"', timeout=UI_TIMEOUT_MS
    )
    await expect(page.get_by_role("textbox", name="Input")).to_contain_text(
        '"payment_method": "pm_card_visa"'
    )
    summary = (
        f"Order {paid_id} · 1 item · "
        f"{format_money(paid['totals']['total'], paid['totals']['currency'])} · {SHOP}"
    )
    await expect(page.get_by_text(summary, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_test_id("data-encoder-status-success")).to_be_visible()
    await _screenshot(page, "temporal-ui-2-paid-order.png")

    await page.get_by_role("tab", name="User Metadata").click()
    # Summary and details are rendered as markdown, each in an iframe of its own.
    rendered = page.locator("iframe").first.content_frame
    await expect(rendered.get_by_text(summary)).to_be_visible(timeout=UI_TIMEOUT_MS)
    await _screenshot(page, "temporal-ui-3-paid-order-summary.png")

    # 3. The declined order: the charge's failure message decrypted, and the order's result.
    declined_run = (await stack.client.get_workflow_handle(declined_wf).describe()).run_id
    await page.goto(f"{runs}/{declined_wf}/{declined_run}/history")
    await expect(page.get_by_role("textbox", name="Result")).to_contain_text(
        '"failure_reason": "payment_declined"', timeout=UI_TIMEOUT_MS
    )
    await page.get_by_role("row").filter(has_text="Activity Task Failed").first.click()
    failure = page.get_by_role("textbox", name="Failure")
    # Encrypted failures read "Encoded failure"; the message is in the decoded attributes.
    await expect(failure).to_contain_text(
        '"message": "Your card was declined."', timeout=UI_TIMEOUT_MS
    )
    await failure.scroll_into_view_if_needed()
    await _screenshot(page, "temporal-ui-4-declined-order.png")
