"""The whole engine for integration tests: the real Temporal dev server,
PostgreSQL, the provider sandbox, the API and the worker. Nothing of ours is
mocked; the sandbox is the only stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from db.outbox import OutboxRelay
from devstack.harness import loopback_socket, serve_in_thread
from devstack.services import find_temporal_cli
from fulfil.codec import KeyRing, data_converter
from fulfil.settings import Settings
from fulfil.temporal import SEARCH_ATTRIBUTES
from worker import build_workers, ensure_payout_schedule, open_resources


@pytest.fixture(scope="session")
async def temporal(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_cli(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(KeyRing.parse(settings.codec_keys)),
        dev_server_log_level="error",
        dev_server_startup_timeout=timedelta(seconds=60),
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def stack_settings(settings: Settings, temporal: WorkflowEnvironment) -> Settings:
    return settings.model_copy(
        update={"temporal_address": temporal.client.service_client.config.target_host}
    )


@pytest.fixture(scope="session")
def sandbox(stack_settings: Settings, ports: dict[str, int]) -> Iterator[str]:
    from sandbox.app import create_app

    with serve_in_thread(
        create_app(stack_settings), loopback_socket(ports["sandbox"]), startup_timeout=30
    ) as url:
        yield url


@pytest.fixture(scope="session")
def api(stack_settings: Settings, ports: dict[str, int], sandbox: str) -> Iterator[str]:
    from api.app import create_app

    with serve_in_thread(
        create_app(stack_settings), loopback_socket(ports["api"]), startup_timeout=30
    ) as url:
        yield url


@pytest.fixture(scope="session")
async def worker(
    stack_settings: Settings, temporal: WorkflowEnvironment, sandbox: str
) -> AsyncIterator[None]:
    client = temporal.client
    stop = asyncio.Event()

    async def provider() -> Client:
        return client

    async with open_resources(stack_settings) as resources:
        relay = OutboxRelay(resources.sessionmaker, provider, stack_settings.task_queue)
        async with contextlib.AsyncExitStack() as running:
            for one in build_workers(client, stack_settings, resources):
                await running.enter_async_context(one)
            await ensure_payout_schedule(client, stack_settings)
            relay_task = asyncio.create_task(
                relay.run(stack_settings.outbox_relay_interval_seconds, stop)
            )
            yield
            stop.set()
            await relay_task


@pytest.fixture(scope="session")
async def engine(api: str, worker: None, sandbox: str) -> dict[str, str]:
    """Everything running: returns the base URLs."""
    return {"api": api, "sandbox": sandbox}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def ops_headers(stack_settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack_settings.ops_api_key}"}
