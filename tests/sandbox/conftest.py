"""Fixtures of the provider sandbox tests: one sandbox served by uvicorn in a thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import cloudflare
import httpx
import pytest
import stripe
from fastapi import FastAPI

from devstack.harness import loopback_socket, serve_in_thread
from fulfil.settings import Settings
from sandbox.app import create_app
from sandbox.state import SandboxState

T = TypeVar("T")

WEBHOOK_SECRET = "whsec_sandbox_tests"
API_KEY = "sk_test_sandbox_tests"
CLOUDFLARE_TOKEN = "cf-sandbox-tests-token"
# The sandbox's own hooks recorder stands in for the engine: Stripe events go
# to {api_base}/webhooks/stripe, i.e. the recorder named ENGINE_HOOK below.
ENGINE_HOOK = "engine/webhooks/stripe"


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


@dataclass
class Sandbox:
    base_url: str
    settings: Settings
    app: FastAPI

    @property
    def state(self) -> SandboxState:
        state: SandboxState = self.app.state.sandbox
        return state


@contextmanager
def serve_sandbox(**overrides: Any) -> Iterator[Sandbox]:
    """A sandbox of its own whose webhooks go to its own ``engine`` hook recorder."""
    sock = loopback_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        env="test",
        api_base=f"{base}/_sandbox/hooks/engine",
        sandbox_base=base,
        **overrides,
    )
    app = create_app(settings)
    with serve_in_thread(app, sock) as url:
        yield Sandbox(base_url=url, settings=settings, app=app)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    with serve_sandbox(stripe_webhook_secret=WEBHOOK_SECRET) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
async def control_http(sandbox_server: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_server.base_url, timeout=10) as client:
        yield client


@pytest.fixture
async def sandbox(sandbox_server: Sandbox, control_http: httpx.AsyncClient) -> Sandbox:
    """The shared sandbox, reset before the test."""
    response = await control_http.post("/_sandbox/reset")
    response.raise_for_status()
    return sandbox_server


def make_stripe_client(base_url: str, *, max_network_retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": f"{base_url}/stripe"},
        http_client=stripe.HTTPXClient(),
        max_network_retries=max_network_retries,
    )


@pytest.fixture
def stripe_client(sandbox: Sandbox) -> stripe.StripeClient:
    """No SDK retries: each call is one request, so faults show as errors."""
    return make_stripe_client(sandbox.base_url)


def make_cloudflare_client(
    base_url: str, *, token: str = CLOUDFLARE_TOKEN, max_retries: int = 0
) -> cloudflare.AsyncCloudflare:
    """The official SDK against the sandbox; ``invalid-``/``limited-`` tokens change its rights."""
    return cloudflare.AsyncCloudflare(
        api_token=token, base_url=f"{base_url}/cloudflare/client/v4", max_retries=max_retries
    )


@pytest.fixture
async def cloudflare_client(sandbox: Sandbox) -> AsyncIterator[cloudflare.AsyncCloudflare]:
    """No SDK retries: each call is one request, so faults show as errors."""
    async with make_cloudflare_client(sandbox.base_url) as client:
        yield client
