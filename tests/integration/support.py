"""Helpers for integration tests: merchants through the API, polling with a deadline."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx


async def create_merchant(
    http: httpx.AsyncClient, api: str, ops_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "Test Shop", "email": f"shop-{uuid.uuid4().hex[:6]}@example.com", **fields}
    response = await http.post(f"{api}/api/v1/merchants", json=body, headers=ops_headers)
    assert response.status_code == 201, response.text
    merchant: dict[str, Any] = response.json()
    merchant["headers"] = {"Authorization": f"Bearer {merchant['api_key']}"}
    return merchant


async def eventually(check: Any, *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``check`` (async, returns a truthy value when done) until a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
