"""The worker: builds clients and activities, registers every workflow, runs the outbox relay.

``python worker.py``. Tests build the same worker with :func:`build_worker`.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from activities.cloudflare import CloudflareActivities
from activities.inventory import InventoryActivities
from activities.ledger import LedgerActivities
from activities.notify import NotifyActivities, WebhookPolicy
from activities.order_records import OrderRecordActivities
from activities.payments import PaymentActivities, build_stripe
from activities.payouts import PayoutActivities
from activities.registry import activity_methods
from activities.shipping import ShippingActivities, build_shippo
from activities.tiktok import TIKTOK_API, TikTokActivities
from activities.vault import TokenVault
from db import inbox
from db.outbox import OutboxRelay
from db.session import make_engine, make_sessionmaker
from fulfil.codec import KeyRing
from fulfil.ids import PAYOUT_RELEASE_SCHEDULE
from fulfil.logs import configure_logging
from fulfil.messages.payouts import PayoutReleaseInput
from fulfil.settings import Settings, get_settings
from fulfil.temporal import connect, metrics_runtime
from workflows.escrow_payout import EscrowPayout
from workflows.order_placement import OrderPlacement
from workflows.package_deployment import PackageDeployment
from workflows.payout_release import PayoutRelease
from workflows.shipment import Shipment
from workflows.tiktok_fulfillment import TikTokFulfillment

log = logging.getLogger("worker")

WORKFLOWS = [
    OrderPlacement,
    Shipment,
    TikTokFulfillment,
    EscrowPayout,
    PayoutRelease,
    PackageDeployment,
]
HOUSEKEEPING_INTERVAL = 3600.0


@dataclass
class Resources:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    redis: Redis


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    engine = make_engine(
        settings.database_url,
        pool_size=20,
        connect_timeout=settings.database_connect_timeout_seconds,
    )
    http = httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=5.0))
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        yield Resources(
            engine=engine, sessionmaker=make_sessionmaker(engine), http=http, redis=redis
        )
    finally:
        await redis.aclose()
        await http.aclose()
        await engine.dispose()


def activity_objects(settings: Settings, resources: Resources) -> list[object]:
    """One object per activity class, wired to its clients."""
    tiktok = TikTokActivities(
        resources.http,
        api_base=settings.tiktok_api_base or TIKTOK_API,
        app_key=settings.tiktok_app_key,
        app_secret=settings.tiktok_app_secret,
        access_token=settings.tiktok_access_token,
    )
    notify = NotifyActivities(
        resources.sessionmaker,
        resources.http,
        email_api_base=settings.email_api_base,
        email_from=settings.email_from,
        keyring=KeyRing.parse(settings.codec_keys),
        webhooks=WebhookPolicy(
            allowlist=settings.webhook_allowlist(),
            require_https=settings.env == "production",
            breaker_failures=settings.webhook_breaker_failures,
            breaker_cooldown=timedelta(seconds=settings.webhook_breaker_cooldown_seconds),
        ),
    )
    return [
        OrderRecordActivities(resources.sessionmaker),
        InventoryActivities(resources.sessionmaker),
        LedgerActivities(resources.sessionmaker),
        PaymentActivities(build_stripe(settings)),
        PayoutActivities(resources.sessionmaker, build_stripe(settings)),
        CloudflareActivities(
            resources.sessionmaker,
            TokenVault(resources.redis, settings.vault_key),
            resources.http,
            api_base=settings.cloudflare_api_base,
        ),
        ShippingActivities(build_shippo(settings)),
        tiktok,
        notify,
    ]


def build_workers(client: Client, settings: Settings, resources: Resources) -> list[Worker]:
    """The workflows and their activities on the task queue; notifications (emails, merchant
    webhooks) on a queue of their own with a concurrency cap, so a dead merchant endpoint never
    takes a slot from a payment or a label."""
    objects = activity_objects(settings, resources)
    notify = [o for o in objects if isinstance(o, NotifyActivities)]
    rest = [o for o in objects if not isinstance(o, NotifyActivities)]
    return [
        Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=activity_methods(*rest),
            max_concurrent_activities=200,
            max_cached_workflows=settings.worker_max_cached_workflows,
            sticky_queue_schedule_to_start_timeout=timedelta(
                seconds=settings.sticky_schedule_to_start_seconds
            ),
        ),
        Worker(
            client,
            task_queue=settings.notify_task_queue,
            activities=activity_methods(*notify),
            max_concurrent_activities=settings.notify_concurrency,
        ),
    ]


def worker_runtime(settings: Settings) -> Runtime | None:
    """SDK metrics are worth having, not worth refusing to work for: a taken port is logged."""
    try:
        runtime = metrics_runtime(settings)
    except Exception as err:
        log.warning(
            "worker metrics not served",
            extra={"port": settings.worker_metrics_port, "error": str(err)},
        )
        return None
    if runtime is not None:
        log.info(
            "worker metrics served",
            extra={
                "url": f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics"
            },
        )
    return runtime


async def connect_when_up(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Temporal, once it answers: a worker started during an outage waits for it (backing
    off to 30 s between tries) rather than exiting; None when asked to stop first."""
    runtime = worker_runtime(settings)
    delay = 1.0
    while not stop.is_set():
        try:
            return await connect(settings, runtime=runtime)
        except RuntimeError as err:  # the SDK's "Failed client connect"
            log.warning(
                "Temporal does not answer; trying again",
                extra={"address": settings.temporal_address, "in_s": delay, "error": str(err)},
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, 30.0)
    return None


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Blocking SDK calls (Shippo) run in threads: the default pool has min(32, cores + 4), six
    # here, so the seventh label waited for a thread inside its own timeout.
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=settings.worker_io_threads, thread_name_prefix="io")
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect_when_up(settings, stop)
    if client is None:
        return
    async with open_resources(settings) as resources:
        workers = build_workers(client, settings, resources)
        await ensure_payout_schedule(client, settings)

        async def _client() -> Client:
            return client

        relay = OutboxRelay(resources.sessionmaker, _client, settings.task_queue)
        log.info("worker started", extra={"task_queue": settings.task_queue})
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            relay_task = asyncio.create_task(
                relay.run(settings.outbox_relay_interval_seconds, stop)
            )
            housekeeping = asyncio.create_task(keep_house(settings, resources, stop))
            await stop.wait()
            await relay_task
            await housekeeping
        log.info("worker stopped")


async def ensure_payout_schedule(client: Client, settings: Settings) -> None:
    """The ``payout-release`` schedule, created or brought up to date (interval, queue): every
    worker start does this, so a changed ``PAYOUT_RUN_INTERVAL_SECONDS`` takes effect. Overlapping
    runs are skipped (and would pay nothing twice anyway)."""
    action = ScheduleActionStartWorkflow(
        PayoutRelease.run,
        PayoutReleaseInput(),
        id="payout-release-run",
        task_queue=settings.task_queue,
        static_summary="Release every payout whose hold has passed",
    )
    spec = ScheduleSpec(
        intervals=[
            ScheduleIntervalSpec(every=timedelta(seconds=settings.payout_run_interval_seconds))
        ]
    )
    policy = SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP)
    handle = client.get_schedule_handle(PAYOUT_RELEASE_SCHEDULE)
    try:
        await client.create_schedule(
            PAYOUT_RELEASE_SCHEDULE, Schedule(action=action, spec=spec, policy=policy)
        )
        log.info(
            "payout-release schedule created", extra={"every": settings.payout_run_interval_seconds}
        )
    except ScheduleAlreadyRunningError:

        def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule = current.description.schedule
            schedule.action = action
            schedule.spec = spec
            schedule.policy = policy
            return ScheduleUpdate(schedule=schedule)

        await handle.update(update)


async def keep_house(settings: Settings, resources: Resources, stop: asyncio.Event) -> None:
    """Hourly: delete verified webhooks past ``INBOX_RETENTION_DAYS``."""
    retention = timedelta(days=settings.inbox_retention_days)
    while not stop.is_set():
        try:
            async with resources.sessionmaker.begin() as session:
                purged = await inbox.purge_inbox(session, retention)
            if purged:
                log.info("inbox purged", extra={"count": purged})
        except Exception:
            log.exception("inbox purge failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=HOUSEKEEPING_INTERVAL)


def precompile_workflows() -> None:
    """Bytecode for what the workflow sandbox imports. The sandbox imports the workflow modules
    afresh for every run it starts or replays; with ``PYTHONDONTWRITEBYTECODE`` set (the image
    sets it, some machines do) and no ``__pycache__``, each of those imports compiled the
    source again (9 % of the worker's CPU under load)."""
    root = Path(__file__).resolve().parent
    for package in ("workflows", "fulfil"):
        compileall.compile_dir(root / package, quiet=2)


def main() -> None:
    configure_logging("worker")
    precompile_workflows()
    status = 0
    try:
        asyncio.run(run(get_settings()))
    except Exception:
        log.exception("worker crashed")
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # temporalio can abort the interpreter at exit (sdk-python #300)


if __name__ == "__main__":
    main()
