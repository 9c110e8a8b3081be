"""POST /api/deploy and friends without Temporal: validation that names the field, the
token kept out of every answer and row, retries with an Idempotency-Key, tenants and roles.

(The nine steps themselves run in tests/integration/test_deployment.py.)
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.api.conftest import MerchantActor, assert_problem, error_fields, order_body, scalar

SAMPLE = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "package-candle-shop.json").read_text()
)


def body(token: str | None = None, **package_changes: Any) -> dict[str, Any]:
    package = copy.deepcopy(SAMPLE)
    package.update(package_changes)
    return {
        "package": package,
        "cloudflare": {
            "account_id": "acc" + uuid.uuid4().hex[:12],
            "api_token": token or f"canary-{uuid.uuid4().hex}",
            "zone_id": "zone" + uuid.uuid4().hex[:12],
        },
        "hostname": "shop.candles.example.com",
    }


def with_cloudflare(**changes: Any) -> dict[str, Any]:
    b = body()
    b["package"]["cloudflare"].update(changes)
    return b


async def test_a_deploy_is_accepted_and_reads_back_pending(
    merchant: MerchantActor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    b = body()
    token = b["cloudflare"]["api_token"]
    r = await merchant.client.post("/api/deploy", json=b, headers=merchant.auth)
    assert r.status_code == 202, r.text
    assert token not in r.text
    deployment_id = r.json()["deploymentId"]

    r = await merchant.client.get(
        "/api/deploy", params={"deploymentId": deployment_id}, headers=merchant.auth
    )
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["status"] == "pending"
    assert [s["name"] for s in found["steps"]] == [
        "verify_token",
        "create_namespace",
        "deploy_workers",
        "create_d1",
        "create_r2",
        "configure_domain",
        "create_dns_records",
        "set_environment",
        "run_post_deploy",
    ]
    assert {s["status"] for s in found["steps"]} == {"pending"}
    assert token not in r.text
    # Not in the deployment's row, nor in the start waiting in the outbox (only a handle).
    row = await scalar(
        sessionmaker,
        "SELECT row_to_json(d)::text FROM deployments d WHERE id = :i",
        i=deployment_id,
    )
    assert deployment_id in row
    assert token not in row
    start = await scalar(
        sessionmaker,
        "SELECT payload::text FROM outbox WHERE workflow_id = :w AND kind = 'start_workflow'",
        w=f"deploy-{deployment_id}",
    )
    assert "token_handle" in start
    assert token not in start


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"slug": "Not A Slug"}, "package.slug"),
        ({"version": ""}, "package.version"),
        ({"cloudflare": {"workers": []}}, "package.cloudflare.workers"),
    ],
)
async def test_a_bad_manifest_is_422_naming_the_field(
    merchant: MerchantActor, change: dict[str, Any], field: str
) -> None:
    b = body(**change)
    r = await merchant.client.post("/api/deploy", json=b, headers=merchant.auth)
    problem = assert_problem(r, 422)
    assert any(f.startswith(field) for f in error_fields(problem)), problem
    assert b["cloudflare"]["api_token"] not in r.text


@pytest.mark.parametrize(
    ("b", "field"),
    [
        (with_cloudflare(secrets=["lower_case"]), "package.cloudflare.secrets"),
        (with_cloudflare(vars={"SHOP": "x"}, secrets=["SHOP"]), "package.cloudflare"),
        (
            with_cloudflare(dns_records=[{"type": "MX", "name": "@", "content": "x"}]),
            "package.cloudflare.dns_records",
        ),
        (
            with_cloudflare(
                post_deploy=[{"kind": "d1_sql", "database": "nope", "sql": "SELECT 1"}]
            ),
            "package.cloudflare",
        ),
        (
            with_cloudflare(
                workers=[
                    {
                        "name": "w",
                        "main_module": "missing.js",
                        "modules": {"index.js": "export default {}"},
                        "compatibility_date": "2026-01-01",
                    }
                ]
            ),
            "package.cloudflare.workers",
        ),
    ],
)
async def test_a_manifest_that_contradicts_itself_is_422(
    merchant: MerchantActor, b: dict[str, Any], field: str
) -> None:
    r = await merchant.client.post("/api/deploy", json=b, headers=merchant.auth)
    problem = assert_problem(r, 422)
    assert any(f.startswith(field) for f in error_fields(problem)), problem


async def test_a_bad_token_field_is_422_without_echoing_it(merchant: MerchantActor) -> None:
    b = body()
    b["cloudflare"]["api_token"] = "x" * 600 + "-canary"
    r = await merchant.client.post("/api/deploy", json=b, headers=merchant.auth)
    problem = assert_problem(r, 422)
    assert "cloudflare.api_token" in error_fields(problem)
    assert "canary" not in r.text


async def test_a_retry_with_the_same_key_is_the_same_deployment(
    merchant: MerchantActor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    b = body()
    headers = {**merchant.auth, "Idempotency-Key": uuid.uuid4().hex}
    first = await merchant.client.post("/api/deploy", json=b, headers=headers)
    assert first.status_code == 202, first.text
    # A retry may carry a fresh token: the same deployment, not a second copy of the package.
    again = copy.deepcopy(b)
    again["cloudflare"]["api_token"] = "another-token"
    second = await merchant.client.post("/api/deploy", json=again, headers=headers)
    assert second.status_code == 202, second.text
    assert second.json()["deploymentId"] == first.json()["deploymentId"]
    count = await scalar(
        sessionmaker,
        "SELECT count(*) FROM deployments WHERE merchant_id = :m AND account_id = :a",
        m=merchant.merchant_id,
        a=b["cloudflare"]["account_id"],
    )
    assert count == 1
    # The same key with another package is refused.
    other = body()
    r = await merchant.client.post("/api/deploy", json=other, headers=headers)
    problem = assert_problem(r, 422)
    assert error_fields(problem) == ["Idempotency-Key"]


async def test_an_order_key_is_not_a_deployment(merchant: MerchantActor) -> None:
    await merchant.add_product("deploy-key-sku")
    key = uuid.uuid4().hex
    r = await merchant.place(order_body(("deploy-key-sku", 1)), key=key)
    assert r.status_code in (201, 202), r.text
    r = await merchant.client.post(
        "/api/deploy", json=body(), headers={**merchant.auth, "Idempotency-Key": key}
    )
    assert r.status_code in (409, 422), r.text


async def test_another_merchant_cannot_read_or_resupply(
    merchant: MerchantActor, other_merchant: MerchantActor, ops: dict[str, str]
) -> None:
    r = await merchant.client.post("/api/deploy", json=body(), headers=merchant.auth)
    deployment_id = r.json()["deploymentId"]
    r = await other_merchant.client.get(
        "/api/deploy", params={"deploymentId": deployment_id}, headers=other_merchant.auth
    )
    assert_problem(r, 404)
    r = await other_merchant.client.post(
        f"/api/deploy/{deployment_id}/token",
        json={"api_token": "t"},
        headers=other_merchant.auth,
    )
    assert_problem(r, 404)
    r = await merchant.client.get(
        "/api/deploy", params={"deploymentId": deployment_id}, headers=ops
    )
    assert r.status_code == 200, r.text


async def test_a_token_for_an_ended_deployment_is_409(
    merchant: MerchantActor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    r = await merchant.client.post("/api/deploy", json=body(), headers=merchant.auth)
    deployment_id = r.json()["deploymentId"]
    r = await merchant.client.post(
        f"/api/deploy/{deployment_id}/token", json={"api_token": "t2"}, headers=merchant.auth
    )
    assert r.status_code == 202, r.text
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE deployments SET status = 'succeeded' WHERE id = :i"), {"i": deployment_id}
        )
    r = await merchant.client.post(
        f"/api/deploy/{deployment_id}/token", json={"api_token": "t3"}, headers=merchant.auth
    )
    assert_problem(r, 409)


async def test_unknown_and_malformed_ids(merchant: MerchantActor) -> None:
    r = await merchant.client.get(
        "/api/deploy", params={"deploymentId": "dep_nope"}, headers=merchant.auth
    )
    assert_problem(r, 404)
    r = await merchant.client.get(
        "/api/deploy", params={"deploymentId": "../etc"}, headers=merchant.auth
    )
    assert_problem(r, 422)
    r = await merchant.client.get("/api/deploy", headers=merchant.auth)
    assert_problem(r, 422)


async def test_a_deploy_from_a_second_tenant_is_its_own(
    merchant: MerchantActor, other_merchant: MerchantActor
) -> None:
    """Two merchants deploying the same package with the same Idempotency-Key get two
    deployments: keys are per merchant."""
    key = uuid.uuid4().hex
    b = body()
    one = await merchant.client.post(
        "/api/deploy", json=b, headers={**merchant.auth, "Idempotency-Key": key}
    )
    two = await other_merchant.client.post(
        "/api/deploy", json=b, headers={**other_merchant.auth, "Idempotency-Key": key}
    )
    assert one.status_code == two.status_code == 202
    assert one.json()["deploymentId"] != two.json()["deploymentId"]


async def test_the_body_is_bounded(merchant: MerchantActor) -> None:
    b = with_cloudflare(
        workers=[
            {
                "name": "big",
                "main_module": "index.js",
                "modules": {"index.js": "x" * 2_000_000},
                "compatibility_date": "2026-01-01",
            }
        ]
    )
    r = await merchant.client.post("/api/deploy", json=b, headers=merchant.auth)
    assert r.status_code in (413, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
