"""The buyer's Cloudflare token is never stored: two canary tokens (the first, and the one
re-supplied after the vault's copy expired) are deployed through the API, and then looked
for everywhere the engine keeps or says anything.

Found zero times in: every answer of the API, the run's Temporal history (raw, and decoded
with the codec), every row of every PostgreSQL table, every log record of the API and the
worker (they run in this process), and Redis once the run has ended.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from fulfil.logs import JsonFormatter
from fulfil.settings import Settings
from tests.integration.support import create_merchant, eventually
from tests.integration.test_deployment import deploy_body, ended, fault, progress
from tests.integration.test_security import payloads
from workflows.package_deployment import PackageDeployment

pytestmark = pytest.mark.integration


class Everything(logging.Handler):
    """Every record at any level, as the JSON formatter writes it (extras included)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[Everything]:
    handler = Everything()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class Answers:
    """An httpx client that keeps every response body and header it saw."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.seen: list[str] = []

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        r = await self.http.request(method, url, **kwargs)
        self.seen.append(f"{r.status_code} {dict(r.headers)} {r.text}")
        return r


async def test_the_token_is_nowhere(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    ops_headers: dict[str, str],
    stack_settings: Settings,
    temporal: WorkflowEnvironment,
    logs: Everything,
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    first = f"canary-{uuid.uuid4().hex}"
    second = f"canary-{uuid.uuid4().hex}"
    answers = Answers(http)

    buyer = await create_merchant(http, api, ops_headers)

    # A bad request carrying the token: refused, and not echoed.
    bad = deploy_body(first)
    bad["package"]["slug"] = "Not A Slug"
    r = await answers.request("POST", f"{api}/api/deploy", json=bad, headers=buyer["headers"])
    assert r.status_code == 422

    body = deploy_body(first)
    # D1 is slow today: the vault's copy of the first token expires while the step runs.
    await fault(http, sandbox, method="POST", path="/d1/database", latency_ms=1500, times=1)
    r = await answers.request(
        "POST",
        f"{api}/api/deploy",
        json=body,
        headers={**buyer["headers"], "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 202, r.text
    deployment_id = r.json()["deploymentId"]

    async def at(step: str) -> bool:
        found = await progress(http, api, buyer, deployment_id)
        return any(s["name"] == step and s["status"] == "running" for s in found["steps"])

    await eventually(lambda: at("create_d1"))
    redis = Redis.from_url(stack_settings.redis_url)
    try:
        for key in await redis.keys("vault:cloudflare:*"):
            await redis.delete(key)
        handle = temporal.client.get_workflow_handle(f"deploy-{deployment_id}")

        async def waiting_for_token() -> bool:
            view = await handle.query(PackageDeployment.progress)
            return view.waiting_for_token

        await eventually(waiting_for_token)
        r = await answers.request(
            "POST",
            f"{api}/api/deploy/{deployment_id}/token",
            json={"api_token": second},
            headers=buyer["headers"],
        )
        assert r.status_code == 202, r.text
        result = await ended(http, api, buyer, deployment_id)
        assert result["status"] == "succeeded", result
        r = await answers.request(
            "GET",
            f"{api}/api/deploy",
            params={"deploymentId": deployment_id},
            headers=buyer["headers"],
        )
        assert r.status_code == 200

        # (Succeeding proves both tokens were used: the sandbox refuses a call without one.)
        canaries = [first.encode(), second.encode()]

        # 1. Every API answer.
        assert len(answers.seen) == 4
        for answer in answers.seen:
            assert first not in answer
            assert second not in answer

        # 2. The run's history, raw (as the server stores it) and decoded.
        address = temporal.client.service_client.config.target_host
        raw = await Client.connect(address, namespace=temporal.client.namespace)
        raw_history = await raw.get_workflow_handle(f"deploy-{deployment_id}").fetch_history()
        serialized = raw_history.to_json().encode()
        decoded = await handle.fetch_history()
        decoded_payloads = [p for event in decoded.events for _, p in payloads(event)]
        codec = temporal.client.data_converter.payload_codec
        assert codec is not None
        plain = await codec.decode([p for event in raw_history.events for _, p in payloads(event)])
        assert len(plain) > 20
        for canary in canaries:
            assert canary not in serialized
            assert all(canary not in p.data for p in plain)
            assert all(canary not in p.data for p in decoded_payloads)
        # The handles the run carried are in there (so the decoding worked), and only they.
        handles = {
            m.decode()
            for p in plain
            for m in re.findall(rb'"token_handle":\s*"([A-Za-z0-9_-]+)"', p.data)
        }
        assert len(handles) == 2, handles  # the first, and the re-supplied one

        # 3. Every row of every table.
        engine_ = create_async_engine(stack_settings.database_url)
        try:
            async with engine_.connect() as conn:
                tables = (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
                    )
                ).scalars()
                searched = 0
                for table in list(tables):
                    hits = await conn.scalar(
                        text(
                            f'SELECT count(*) FROM "{table}" t '
                            "WHERE strpos(t::text, :a) > 0 OR strpos(t::text, :b) > 0"
                        ),
                        {"a": first, "b": second},
                    )
                    assert hits == 0, table
                    searched += 1
                deployments = await conn.scalar(
                    text("SELECT count(*) FROM deployments WHERE id = :i"), {"i": deployment_id}
                )
        finally:
            await engine_.dispose()
        assert searched >= 10
        assert deployments == 1

        # 4. Every log record of the API and the worker, at every level.
        assert any(deployment_id in line for line in logs.lines)
        for line in logs.lines:
            assert first not in line
            assert second not in line

        # 5. Redis after the run: the vault's entry is gone, and no value holds a token.
        async def vault_empty() -> bool:
            return not any([await redis.exists(f"vault:cloudflare:{h}") for h in handles])

        await eventually(vault_empty)
        async for key in redis.scan_iter(count=1000):
            kind = (await redis.type(key)).decode()
            if kind == "string":
                values = [await redis.get(key) or b""]
            elif kind == "hash":
                values = [
                    k + v for k, v in (await redis.hgetall(key)).items()
                ]  # both sides of the hash
            elif kind == "list":
                values = await redis.lrange(key, 0, -1)
            elif kind == "set":
                values = list(await redis.smembers(key))
            elif kind == "zset":
                values = [m for m, _ in await redis.zrange(key, 0, -1, withscores=True)]
            else:
                values = []
            for canary in canaries:
                assert canary not in key
                assert all(canary not in value for value in values), key
    finally:
        await redis.aclose()
        await http.delete(f"{sandbox}/_sandbox/faults")
