"""Cloudflare package deployments end to end on the dev server, against the sandbox's
Cloudflare API through the official SDK: success, a fault at each step rolled back, a
transient failure retried, and a token that expires mid-run."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulfil.enums import DeploymentStep
from tests.integration.support import create_merchant, eventually
from workflows.package_deployment import PackageDeployment

pytestmark = pytest.mark.integration

SAMPLE = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "package-candle-shop.json").read_text()
)
ENDED = {"succeeded", "rolled_back", "failed"}
# What the sample package leaves in the buyer's account, as the deployment records it.
SAMPLE_RESOURCES = {
    "namespace": 1,
    "script": 1,
    "d1_database": 1,
    "r2_bucket": 1,
    "custom_domain": 1,
    "dns_record": 1,
    "cron": 1,
}


def resource_counts(result: dict[str, Any]) -> dict[str, int]:
    return {kind: len(items) for kind, items in result["resources"].items()}


def deploy_body(token: str, *, hostname: str | None = None) -> dict[str, Any]:
    return {
        "package": copy.deepcopy(SAMPLE),
        "cloudflare": {
            "account_id": f"acc{uuid.uuid4().hex[:12]}",
            "api_token": token,
            "zone_id": f"zone{uuid.uuid4().hex[:12]}",
        },
        "hostname": hostname or f"shop-{uuid.uuid4().hex[:6]}.candles.example.com",
    }


async def start(
    http: httpx.AsyncClient, api: str, merchant: dict[str, Any], body: dict[str, Any]
) -> str:
    r = await http.post(f"{api}/api/deploy", json=body, headers=merchant["headers"])
    assert r.status_code == 202, r.text
    assert body["cloudflare"]["api_token"] not in r.text
    return str(r.json()["deploymentId"])


async def progress(
    http: httpx.AsyncClient, api: str, merchant: dict[str, Any], deployment_id: str
) -> dict[str, Any]:
    r = await http.get(
        f"{api}/api/deploy", params={"deploymentId": deployment_id}, headers=merchant["headers"]
    )
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def ended(
    http: httpx.AsyncClient,
    api: str,
    merchant: dict[str, Any],
    deployment_id: str,
    timeout: float = 90,
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = await progress(http, api, merchant, deployment_id)
        return found if found["status"] in ENDED else None

    result: dict[str, Any] = await eventually(check, timeout=timeout, interval=0.25)
    return result


async def made_for(
    http: httpx.AsyncClient, sandbox: str, body: dict[str, Any]
) -> list[dict[str, Any]]:
    """What the sandbox's Cloudflare created for this deployment's account and zone."""
    ledger = (await http.get(f"{sandbox}/_sandbox/ledger")).json()["cloudflare_resources"]
    account, zone = body["cloudflare"]["account_id"], body["cloudflare"]["zone_id"]
    return [r for r in ledger if r.get("account_id") == account or r.get("zone_id") == zone]


async def fault(http: httpx.AsyncClient, sandbox: str, **rule: Any) -> None:
    r = await http.post(f"{sandbox}/_sandbox/faults", json={"provider": "cloudflare", **rule})
    assert r.status_code in (200, 201), r.text


@pytest.fixture
async def buyer(
    engine: dict[str, str], http: httpx.AsyncClient, ops_headers: dict[str, str]
) -> dict[str, Any]:
    return await create_merchant(http, engine["api"], ops_headers)


async def test_the_sample_package_deploys_in_nine_steps(
    engine: dict[str, str], http: httpx.AsyncClient, buyer: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    body = deploy_body("cf-token-ok")
    deployment_id = await start(http, api, buyer, body)
    result = await ended(http, api, buyer, deployment_id)
    assert result["status"] == "succeeded", result
    assert [s["name"] for s in result["steps"]] == [s.value for s in DeploymentStep]
    assert all(s["status"] == "succeeded" for s in result["steps"]), result["steps"]
    assert all(s["started_at"] and s["finished_at"] for s in result["steps"])
    account_id = body["cloudflare"]["account_id"]
    account = (await http.get(f"{sandbox}/_sandbox/cloudflare/accounts/{account_id}")).json()
    [namespace] = account["namespaces"]
    [script] = namespace["scripts"]
    assert {b["name"] for b in script["bindings"]} == {
        "SHOP_NAME",
        "CURRENCY",
        "DB",
        "IMAGES",
        "PAYMENT_WEBHOOK_SECRET",
    }
    assert script["secrets"] == ["PAYMENT_WEBHOOK_SECRET"]
    [database] = account["d1_databases"]
    assert database["tables"]["items"] == 1  # migrated, then the post-deploy insert
    [bucket] = account["r2_buckets"]
    assert bucket["cors_rules"][0]["allowed"]["origins"] == ["https://shop.candles.example.com"]
    [domain] = account["custom_domains"]
    assert domain["hostname"] == body["hostname"]
    assert resource_counts(result) == SAMPLE_RESOURCES
    made = await made_for(http, sandbox, body)
    assert {r["type"] for r in made} >= {"dns_record", "script_secret", "r2_cors"}
    names = [(r["type"], r["name"]) for r in made]
    assert len(names) == len(set(names))  # nothing made twice


# The call each step makes first (a fault there fails that step).
STEP_CALLS = {
    DeploymentStep.VERIFY_TOKEN: ("GET", "/user/tokens/verify"),
    DeploymentStep.CREATE_NAMESPACE: ("POST", "/workers/dispatch/namespaces"),
    DeploymentStep.DEPLOY_WORKERS: ("PUT", "/scripts/"),
    DeploymentStep.CREATE_D1: ("POST", "/d1/database"),
    DeploymentStep.CREATE_R2: ("POST", "/r2/buckets"),
    DeploymentStep.CONFIGURE_DOMAIN: ("PUT", "/workers/domains"),
    DeploymentStep.CREATE_DNS_RECORDS: ("POST", "/dns_records"),
    DeploymentStep.SET_ENVIRONMENT: ("PUT", "/secrets"),
    DeploymentStep.RUN_POST_DEPLOY: ("PUT", "/schedules"),
}


@pytest.mark.parametrize("step", list(DeploymentStep), ids=[s.value for s in DeploymentStep])
async def test_a_refusal_at_any_step_rolls_back_everything(
    engine: dict[str, str], http: httpx.AsyncClient, buyer: dict[str, Any], step: DeploymentStep
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    method, path = STEP_CALLS[step]
    body = deploy_body(f"cf-{uuid.uuid4().hex}")
    await http.delete(f"{sandbox}/_sandbox/faults")
    await fault(http, sandbox, method=method, path=path, status=403, times=1)
    try:
        deployment_id = await start(http, api, buyer, body)
        result = await ended(http, api, buyer, deployment_id)
    finally:
        await http.delete(f"{sandbox}/_sandbox/faults")
    assert result["status"] == "rolled_back", result
    assert result["failed_step"] == step.value
    failed_at = [s["name"] for s in result["steps"]].index(step.value)
    assert result["steps"][failed_at]["status"] == "failed"
    assert all(s["status"] in ("rolled_back", "skipped") for s in result["steps"][:failed_at])
    assert all(s["status"] == "pending" for s in result["steps"][failed_at + 1 :])
    left = [r for r in await made_for(http, sandbox, body) if not r["deleted"]]
    assert left == []


async def test_a_delete_cloudflare_refuses_is_the_only_thing_left(
    engine: dict[str, str], http: httpx.AsyncClient, buyer: dict[str, Any]
) -> None:
    """The rollback goes on past a refused delete: the buyer's account keeps only the D1
    database, and the deployment says so."""
    api, sandbox = engine["api"], engine["sandbox"]
    body = deploy_body(f"cf-{uuid.uuid4().hex}")
    await http.delete(f"{sandbox}/_sandbox/faults")
    await fault(http, sandbox, method="PUT", path="/secrets", status=403, times=1)
    await fault(http, sandbox, method="DELETE", path="/d1/database", status=403)
    try:
        result = await ended(http, api, buyer, await start(http, api, buyer, body))
    finally:
        await http.delete(f"{sandbox}/_sandbox/faults")
    assert result["status"] == "failed", result
    assert result["failed_step"] == "set_environment"
    left = [r for r in await made_for(http, sandbox, body) if not r["deleted"]]
    assert [r["type"] for r in left] == ["d1_database"], left
    assert f"left in the account: d1_database {left[0]['name']}" in result["detail"]
    recorded = {
        kind: [r for r in items if not r.get("deleted")]
        for kind, items in result["resources"].items()
    }
    assert {kind for kind, items in recorded.items() if items} == {"d1_database"}


async def test_a_transient_failure_is_retried_and_succeeds(
    engine: dict[str, str], http: httpx.AsyncClient, buyer: dict[str, Any]
) -> None:
    api, sandbox = engine["api"], engine["sandbox"]
    body = deploy_body("cf-token-transient")
    await fault(http, sandbox, method="POST", path="/r2/buckets", status=500, times=2)
    try:
        result = await ended(http, api, buyer, await start(http, api, buyer, body))
    finally:
        await http.delete(f"{sandbox}/_sandbox/faults")
    assert result["status"] == "succeeded", result
    buckets = [r for r in await made_for(http, sandbox, body) if r["type"] == "r2_bucket"]
    assert len(buckets) == 1


async def test_tokens_without_permission_roll_back(
    engine: dict[str, str], http: httpx.AsyncClient, buyer: dict[str, Any]
) -> None:
    api = engine["api"]
    limited = await ended(http, api, buyer, await start(http, api, buyer, deploy_body("limited-1")))
    assert (limited["status"], limited["failed_step"]) == ("rolled_back", "create_namespace")
    invalid = await ended(http, api, buyer, await start(http, api, buyer, deploy_body("invalid-1")))
    assert (invalid["status"], invalid["failed_step"]) == ("rolled_back", "verify_token")


async def test_an_expired_token_waits_for_a_new_one(
    engine: dict[str, str],
    http: httpx.AsyncClient,
    buyer: dict[str, Any],
    stack_settings: Any,
    temporal: Any,
) -> None:
    from redis.asyncio import Redis

    api, sandbox = engine["api"], engine["sandbox"]
    body = deploy_body("cf-token-first")
    # D1 is slow today: the vault's copy expires while the step runs.
    await fault(http, sandbox, method="POST", path="/d1/database", latency_ms=1500, times=1)
    deployment_id = await start(http, api, buyer, body)

    async def at(step: str) -> bool:
        found = await progress(http, api, buyer, deployment_id)
        return any(s["name"] == step and s["status"] == "running" for s in found["steps"])

    await eventually(lambda: at("create_d1"))
    redis = Redis.from_url(stack_settings.redis_url)
    try:
        for key in await redis.keys("vault:cloudflare:*"):
            await redis.delete(key)
    finally:
        await redis.aclose()
        await http.delete(f"{sandbox}/_sandbox/faults")
    handle = temporal.client.get_workflow_handle(f"deploy-{deployment_id}")

    async def waiting_for_token() -> bool:
        view = await handle.query(PackageDeployment.progress)
        return view.waiting_for_token

    await eventually(waiting_for_token)  # the next call found no token, and waits

    async def says_so() -> bool:
        found = await progress(http, api, buyer, deployment_id)
        assert found["status"] == "running"
        return any(s["detail"].startswith("waiting for a new token") for s in found["steps"])

    await eventually(says_so)  # and the buyer reading progress is told
    r = await http.post(
        f"{api}/api/deploy/{deployment_id}/token",
        json={"api_token": "cf-token-second"},
        headers=buyer["headers"],
    )
    assert r.status_code == 202, r.text
    assert "cf-token-second" not in r.text
    result = await ended(http, api, buyer, deployment_id)
    assert result["status"] == "succeeded", result
