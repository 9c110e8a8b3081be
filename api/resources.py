"""What the API process holds for its lifetime: built in the lifespan, read by dependencies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import stripe
from prometheus_client import Gauge
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.vault import TokenVault
from api.codec_auth import OidcVerifier
from api.gate import KeyDirectory
from api.observability import Metrics
from api.rate_limit import RateLimiter
from db.outbox import ClientProvider, OutboxRelay
from db.session import transaction
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

    Rows are queued and one delivery loop takes them in batches: a burst of
    webhooks costs a claim and a mark per batch, not per row, and never more
    connections than one (400 Shippo webhooks at once had exhausted the pool).
    A failure only logs: the rows stay undispatched and the worker's relay
    re-drives them.
    """

    BATCH = 200

    def __init__(self, relay: OutboxRelay, metrics: Metrics) -> None:
        self._relay = relay
        self._metrics = metrics
        self._pending: list[int] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def schedule(self, outbox_ids: Sequence[int]) -> None:
        """Queue delivery and return at once (async so Starlette runs it on the event loop)."""
        if not outbox_ids:
            return
        self._pending.extend(outbox_ids)
        self._idle.clear()
        self._wake.set()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._deliver_queued())
            self._tasks.add(self._loop_task)
            self._loop_task.add_done_callback(self._tasks.discard)

    async def _deliver_queued(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.BATCH], self._pending[self.BATCH :]
                await self._dispatch(batch)
            self._idle.set()

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
        """At shutdown: let queued deliveries finish, then cancel the rest (the relay has them)."""
        if not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace_seconds)
        pending = {task for task in self._tasks if not task.done()}
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


class WebhookSlots:
    """A bulkhead for provider webhooks: at most ``per_provider`` transactions of one
    provider's webhooks at once, the rest waiting their turn (until the request deadline
    answers 503; providers retry).

    A carrier's day of tracking updates or a marketplace sale arrives as hundreds of requests
    at once. Unbounded, they took all of the API's database connections, and merchants'
    requests waited for the pool and were answered 503. A slot is taken only once the
    signature verified and the body is read, so a slow or forged sender holds none.
    """

    def __init__(
        self, per_provider: int, sessionmaker: async_sessionmaker[AsyncSession], waiting: Gauge
    ) -> None:
        self.per_provider = per_provider
        self._sessionmaker = sessionmaker
        self._waiting = waiting
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def transaction(self, provider: str) -> AsyncIterator[AsyncSession]:
        """One of ``provider``'s slots, and a transaction committed when the block ends."""
        semaphore = self._semaphores.setdefault(provider, asyncio.Semaphore(self.per_provider))
        waiting = self._waiting.labels(provider=provider)
        waiting.inc()
        try:
            await semaphore.acquire()
        finally:
            waiting.dec()
        try:
            async with transaction(self._sessionmaker) as session:
                yield session
        finally:
            semaphore.release()


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Autocommit sessions on the same pool, for reads (no BEGIN/COMMIT round trips).
    read_sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    temporal: ClientProvider
    relay: OutboxRelay
    dispatch: BackgroundDispatch
    metrics: Metrics
    keys: KeyDirectory
    limiter: RateLimiter
    # Stripe, for the few answers that need it now: a seller's new account, reconciliation.
    stripe: stripe.StripeClient
    # Buyers' Cloudflare tokens, for the length of their deployment.
    vault: TokenVault
    # The UI's OIDC access tokens, for the codec endpoints.
    oidc: OidcVerifier
    # Provider webhooks' share of the database pool.
    webhooks: WebhookSlots
