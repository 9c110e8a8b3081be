"""SSRF: merchant webhook URLs that lead inside the network are refused when set."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import MerchantActor, assert_problem, error_fields

HOSTILE = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://127.0.0.1:7233/",  # Temporal's frontend
    "http://127.0.0.1:5432/",  # PostgreSQL
    "http://[::1]:6379/",  # Redis
    "http://0x7f000001/hook",  # loopback in hex
    "http://2130706433/hook",  # loopback as one number
    "http://[::ffff:127.0.0.1]/hook",  # loopback, IPv4-mapped
    "http://10.1.2.3/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://localhost:8000/api/v1/merchants",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://127.0.0.1:8100/_sandbox/reset",  # the sandbox's control endpoints
    "ftp://example.com/hook",
    "https://shop.example.com/hooks/../../admin",
]


@pytest.mark.parametrize("url", HOSTILE)
async def test_hostile_webhook_urls_are_refused(
    client: httpx.AsyncClient, merchant: MerchantActor, ops: dict[str, str], url: str
) -> None:
    r = await client.patch("/api/v1/merchants/me", json={"webhook_url": url}, headers=merchant.auth)
    assert error_fields(assert_problem(r, 422)) == ["webhook_url"]
    created = await client.post(
        "/api/v1/merchants",
        json={"name": "X", "email": "x@example.com", "webhook_url": url},
        headers=ops,
    )
    assert error_fields(assert_problem(created, 422)) == ["webhook_url"]
    me = await client.get("/api/v1/merchants/me", headers=merchant.auth)
    assert me.json()["webhook_url"] != url


async def test_credentials_in_a_url_are_refused_and_never_echoed(
    client: httpx.AsyncClient, merchant: MerchantActor
) -> None:
    url = "https://user:hunter2@shop.example.com/hook"
    r = await client.patch("/api/v1/merchants/me", json={"webhook_url": url}, headers=merchant.auth)
    assert error_fields(assert_problem(r, 422)) == ["webhook_url"]
    assert "hunter2" not in r.text


async def test_the_allowlisted_sandbox_hooks_and_public_hosts_are_accepted(
    client: httpx.AsyncClient, merchant: MerchantActor, api_settings
) -> None:
    hooks = f"{api_settings.sandbox_base}/_sandbox/hooks/shop-1"
    for url in (hooks, "https://hooks.example.com/fulfil"):
        r = await client.patch(
            "/api/v1/merchants/me", json={"webhook_url": url}, headers=merchant.auth
        )
        assert r.status_code == 200, r.text
        assert r.json()["webhook_url"] == url
        assert r.json()["webhook_endpoint"]["status"] == "ok"
    # The allowlist is a prefix, and only of the hooks.
    control = f"{api_settings.sandbox_base}/_sandbox/reset"
    r = await client.patch(
        "/api/v1/merchants/me", json={"webhook_url": control}, headers=merchant.auth
    )
    assert_problem(r, 422)
