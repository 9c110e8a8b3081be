"""What the API process holds for its lifetime: built in the lifespan, read by dependencies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.observability import Metrics
from fulfil.outbox import ClientProvider, OutboxRelay
from fulfil.settings import Settings
from fulfil.temporal import connect

log = logging.getLogger(__name__)


class TemporalUnavailable(Exception):
    """The Temporal client could not be built (server down or unreachable)."""


class LazyTemporalClient:
    """Connects on first use and keeps the client; after a failure, tries again on a later call.

    The API starts and takes orders while Temporal is down: only the calls that
    need Temporal now (cancel, readiness) notice, and the outbox keeps the rest.
    Concurrent callers share one attempt; for ``retry_after`` seconds after a
    failure callers fail fast instead of queueing on the dead address.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        connect_timeout: float = 5.0,
        retry_after: float = 1.0,
        connector: Callable[[Settings], Awaitable[Client]] = connect,
    ) -> None:
        self._settings = settings
        self._connect_timeout = connect_timeout
        self._retry_after = retry_after
        self._connector = connector
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._failed_at: float | None = None
        self._error = ""

    async def __call__(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is not None:
                return self._client
            now = time.monotonic()
            if self._failed_at is not None and now - self._failed_at < self._retry_after:
                raise TemporalUnavailable(self._error)
            try:
                self._client = await asyncio.wait_for(
                    self._connector(self._settings), timeout=self._connect_timeout
                )
            except Exception as err:
                self._failed_at = time.monotonic()
                self._error = f"cannot connect to Temporal at {self._settings.temporal_address}"
                log.warning(self._error, extra={"error": str(err)})
                raise TemporalUnavailable(self._error) from err
            self._failed_at = None
            return self._client


class BackgroundDispatch:
    """Delivers outbox rows after the request's commit, never making the request wait.

    A failure only logs: the rows stay undispatched and the worker's relay
    re-drives them.
    """

    def __init__(self, relay: OutboxRelay, metrics: Metrics) -> None:
        self._relay = relay
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    async def schedule(self, outbox_ids: Sequence[int]) -> None:
        """Start delivery and return at once (async so Starlette runs it on the event loop)."""
        if not outbox_ids:
            return
        task = asyncio.create_task(self._dispatch(list(outbox_ids)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def dispatch_now(self, outbox_ids: Sequence[int]) -> None:
        """Deliver and wait (the cancel route needs the start to have happened)."""
        await self._dispatch(list(outbox_ids))

    async def _dispatch(self, outbox_ids: list[int]) -> None:
        try:
            await self._relay.dispatch(outbox_ids)
        except Exception as err:
            self._metrics.outbox_dispatch_failures.inc()
            log.warning(
                "outbox dispatch failed; the relay will re-drive",
                extra={"outbox_ids": outbox_ids, "error": str(err)},
            )

    async def drain(self, grace_seconds: float) -> None:
        """At shutdown: let deliveries in flight finish, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    temporal: ClientProvider
    relay: OutboxRelay
    dispatch: BackgroundDispatch
    metrics: Metrics
