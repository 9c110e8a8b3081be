"""The ``fulfil`` ops command line, run as ops run it (a process, configured from the
environment) against the whole engine: an order with its runs, payouts, the books (balanced,
then broken on purpose), a replay of recent runs, and the exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import LedgerEntry
from fulfil.ids import new_id
from fulfil.settings import Settings
from ops.config import EXIT_FAILED, EXIT_FOUND_PROBLEM, EXIT_OK, EXIT_USAGE
from tests.integration.support import create_merchant
from tests.integration.test_order_placement import PAID, SHIP_FROM, order_when, place

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[name.upper()] = str(value)
    env["COLUMNS"] = "200"  # rich wraps tables to the terminal; keep ids on one line
    return env


def fulfil(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=ROOT,
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
async def shipped_order(
    engine: dict[str, str], ops_headers: dict[str, str]
) -> tuple[dict[str, Any], str]:
    api = engine["api"]
    async with httpx.AsyncClient(timeout=30) as http:
        merchant = await create_merchant(http, api, ops_headers, ship_from=SHIP_FROM)
        await http.post(
            f"{api}/api/v1/products",
            json={"sku": "MUG-1", "name": "Mug", "price": 1800, "currency": "USD", "stock": 10},
            headers=merchant["headers"],
        )
        placed = await place(http, api, merchant)
        assert placed.status_code == 202, placed.text
        order_id = placed.json()["order_id"]
        await order_when(http, api, merchant, order_id, PAID)
    return merchant, order_id


async def test_orders_show_prints_the_order_and_its_runs(
    stack_settings: Settings, shipped_order: tuple[dict[str, Any], str]
) -> None:
    _, order_id = shipped_order
    shown = fulfil(stack_settings, "orders", "show", order_id, "--json")
    assert shown.returncode == EXIT_OK, shown.stderr
    report = json.loads(shown.stdout)
    assert report["order"]["order_id"] == order_id
    assert report["order"]["status"] in PAID
    runs = {run["workflow_id"]: run for run in report["runs"]}
    assert f"order-{order_id}" in runs
    assert runs[f"order-{order_id}"]["workflow_type"] == "OrderPlacement"
    assert runs[f"order-{order_id}"]["status"] in {"RUNNING", "COMPLETED"}
    assert runs[f"order-{order_id}"]["link"].startswith(stack_settings.temporal_ui_url)

    table = fulfil(stack_settings, "orders", "show", order_id)
    assert table.returncode == EXIT_OK, table.stderr
    assert order_id in table.stdout
    assert "OrderPlacement" in table.stdout


async def test_an_unknown_order_is_one_line_and_exit_3(stack_settings: Settings) -> None:
    missing = fulfil(stack_settings, "orders", "show", "ord_does_not_exist")
    assert missing.returncode == EXIT_FAILED
    assert missing.stdout == ""
    [line] = missing.stderr.strip().splitlines()
    assert "404" in line
    assert "ord_does_not_exist" in line


async def test_a_bad_option_is_a_usage_error(stack_settings: Settings) -> None:
    bad = fulfil(stack_settings, "payouts", "list", "--status", "bogus")
    assert bad.returncode == EXIT_USAGE
    assert "bogus" in bad.stderr


async def test_an_unreachable_api_says_so(stack_settings: Settings) -> None:
    elsewhere = stack_settings.model_copy(update={"api_base": "http://127.0.0.1:9"})
    down = fulfil(elsewhere, "payouts", "list")
    assert down.returncode == EXIT_FAILED
    assert "127.0.0.1:9" in down.stderr


async def test_payouts_list_and_run(stack_settings: Settings, engine: dict[str, str]) -> None:
    listed = fulfil(stack_settings, "payouts", "list", "--json", "--limit", "5")
    assert listed.returncode == EXIT_OK, listed.stderr
    page = json.loads(listed.stdout)
    payouts = page["data"]
    assert isinstance(payouts, list)
    assert len(payouts) <= 5
    assert all({"payout_id", "status", "amount"} <= set(p) for p in payouts)

    triggered = fulfil(stack_settings, "payouts", "run")
    assert triggered.returncode == EXIT_OK, triggered.stderr
    assert "payout-release" in triggered.stdout


async def test_reconcile_exits_1_when_the_books_do_not_balance(
    stack_settings: Settings,
    shipped_order: tuple[dict[str, Any], str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    balanced = fulfil(stack_settings, "reconcile", "--json")
    assert balanced.returncode == EXIT_OK, balanced.stdout + balanced.stderr
    assert json.loads(balanced.stdout)["balanced"] is True

    _, order_id = shipped_order
    key = f"test-unbalanced-{new_id('x')}"
    async with sessionmaker.begin() as session:
        session.add(
            LedgerEntry(
                posting_key=key,
                order_id=order_id,
                account="cash:stripe",
                amount=100,
                currency="USD",
                memo="a debit without its credit",
            )
        )
    try:
        broken = fulfil(stack_settings, "reconcile")
        assert broken.returncode == EXIT_FOUND_PROBLEM, broken.stdout + broken.stderr
        assert order_id in broken.stdout
    finally:
        async with sessionmaker.begin() as session:
            await session.execute(delete(LedgerEntry).where(LedgerEntry.posting_key == key))


async def test_replay_replays_recent_runs_of_every_type(
    stack_settings: Settings, shipped_order: tuple[dict[str, Any], str]
) -> None:
    replayed = fulfil(stack_settings, "replay", "--limit", "3")
    assert replayed.returncode == EXIT_OK, replayed.stdout + replayed.stderr
    assert "OrderPlacement" in replayed.stdout
    assert "none nondeterministic" in replayed.stdout
