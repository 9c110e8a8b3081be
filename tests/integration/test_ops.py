"""What ops and tooling read from a running engine: health, metrics, OpenAPI."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_ready_when_postgres_redis_and_temporal_answer(
    engine: dict[str, str], http: httpx.AsyncClient
) -> None:
    assert (await http.get(f"{engine['api']}/livez")).status_code == 200
    response = await http.get(f"{engine['api']}/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"postgres": "ok", "redis": "ok", "temporal": "ok"},
    }


async def test_metrics_and_openapi_are_served(
    engine: dict[str, str], http: httpx.AsyncClient
) -> None:
    metrics = await http.get(f"{engine['api']}/metrics")
    assert metrics.status_code == 200
    assert "http_requests_total" in metrics.text
    assert "orders_created_total" in metrics.text
    spec = (await http.get(f"{engine['api']}/openapi.json")).json()
    for path in ("/api/v1/orders", "/webhooks/tiktok", "/webhooks/shippo", "/webhooks/stripe"):
        assert path in spec["paths"]
