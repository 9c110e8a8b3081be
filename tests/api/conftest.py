"""API tests: the real app (lifespan running) over ASGI, real PostgreSQL and Redis, no Temporal.

The API tests get a database of their own (``api_database_url``).

``client`` talks to an app whose Temporal address is a closed port, so every
background outbox dispatch fails (harmlessly: rows stay undispatched).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from db.session import make_engine, make_sessionmaker
from devstack.harness import in_process
from fulfil.settings import Settings
from tests.conftest import free_port, fresh_database

PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="session")
def api_database_url() -> Iterator[str]:
    """A database of the API tests' own.

    Their orders leave undispatched outbox rows on purpose; in the shared
    database a worker's relay in a later test package would start them.
    """
    with fresh_database("fulfil_api_test") as url:
        yield url


@pytest.fixture(scope="session")
def api_settings(settings: Settings, api_database_url: str) -> Settings:
    """Temporal at a closed port: every start and signal stays in the outbox."""
    return settings.model_copy(
        update={
            "database_url": api_database_url,
            "temporal_address": f"127.0.0.1:{free_port()}",
        }
    )


@pytest.fixture(scope="session")
async def sessionmaker(api_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Overrides the root fixture for tests/api: the API tests' database."""
    engine = make_engine(api_settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
def app(api_settings: Settings) -> FastAPI:
    return create_app(api_settings)


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(app) as c:
        yield c


# --- actors -----------------------------------------------------------------


@pytest.fixture(scope="session")
def ops(api_settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_settings.ops_api_key}"}


@dataclass
class MerchantActor:
    merchant_id: str
    api_key: str
    webhook_secret: str
    client: httpx.AsyncClient
    name: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def add_product(
        self, sku: str, *, price: int = 1000, stock: int = 10, currency: str = "USD"
    ) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/products",
            json={
                "sku": sku,
                "name": sku.title(),
                "price": price,
                "currency": currency,
                "stock": stock,
            },
            headers=self.auth,
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def place(
        self, body: dict[str, Any], key: str | None = None, client: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        headers = {**self.auth, "Idempotency-Key": key or uuid.uuid4().hex}
        return await (client or self.client).post("/api/v1/orders", json=body, headers=headers)


_names = itertools.count()
SHIP_FROM = {
    "name": "Warehouse",
    "street1": "500 Market St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94105",
    "country": "US",
}


async def make_merchant(
    client: httpx.AsyncClient, ops: dict[str, str], **fields: Any
) -> MerchantActor:
    n = next(_names)
    body = {
        "name": f"Shop {n}",
        "email": f"shop{n}@example.com",
        "ship_from": SHIP_FROM,
        **fields,
    }
    r = await client.post("/api/v1/merchants", json=body, headers=ops)
    assert r.status_code == 201, r.text
    data = r.json()
    return MerchantActor(
        data["merchant_id"], data["api_key"], data["webhook_secret"], client, body["name"]
    )


@pytest.fixture
async def merchant(client: httpx.AsyncClient, ops: dict[str, str]) -> MerchantActor:
    return await make_merchant(client, ops)


@pytest.fixture
async def other_merchant(client: httpx.AsyncClient, ops: dict[str, str]) -> MerchantActor:
    return await make_merchant(client, ops)


def order_body(*items: tuple[str, int], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "items": [{"sku": sku, "quantity": qty} for sku, qty in items],
        "shipping_address": {
            "name": "Ada",
            "street1": "1 Main St",
            "city": "Sydney",
            "state": "NSW",
            "zip": "2000",
            "country": "AU",
        },
        "payment_method": "pm_card_visa",
    }
    body.update(overrides)
    return body


# --- assertions and database peeks -------------------------------------------


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers
    body = dict(r.json())
    assert body["status"] == status
    assert body["title"]
    assert "type" in body
    assert "detail" in body
    return body


def error_fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors") or []]


async def scalar(sessionmaker: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> Any:
    async with sessionmaker() as session:
        return await session.scalar(text(sql), params)


async def rows(
    sessionmaker: async_sessionmaker[AsyncSession], sql: str, **params: Any
) -> list[Any]:
    async with sessionmaker() as session:
        return list((await session.execute(text(sql), params)).mappings().all())


def stripe_signature(payload: bytes, secret: str, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    ).encode()
