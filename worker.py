"""The worker: builds clients and activities, registers every workflow, runs the outbox relay.

``python worker.py``. Tests build the same worker with :func:`build_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.notify import NotifyActivities
from activities.payments import PaymentActivities, build_stripe
from activities.shipping import ShippingActivities, build_shippo
from activities.store import StoreActivities
from activities.tiktok import TIKTOK_API, TikTokActivities
from db.session import make_engine, make_sessionmaker
from fulfil.codec import KeyRing
from fulfil.logs import configure_logging
from fulfil.outbox import OutboxRelay
from fulfil.settings import Settings, get_settings
from fulfil.temporal import connect
from workflows.order_placement import OrderPlacement
from workflows.shipment import Shipment
from workflows.tiktok_fulfillment import TikTokFulfillment

log = logging.getLogger("worker")

WORKFLOWS = [OrderPlacement, Shipment, TikTokFulfillment]


@dataclass
class Resources:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    engine = make_engine(settings.database_url, pool_size=20)
    http = httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=5.0))
    try:
        yield Resources(engine=engine, sessionmaker=make_sessionmaker(engine), http=http)
    finally:
        await http.aclose()
        await engine.dispose()


def activities_for(settings: Settings, resources: Resources) -> list[object]:
    store = StoreActivities(resources.sessionmaker)
    payments = PaymentActivities(build_stripe(settings))
    shipping = ShippingActivities(build_shippo(settings))
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
    )
    return [
        store.price_order,
        store.reserve_stock,
        store.commit_stock,
        store.release_stock,
        store.record_status,
        store.record_payment,
        store.record_refund,
        store.shipment_plan,
        store.record_shipment,
        store.save_tiktok_order,
        payments.charge,
        payments.refund,
        payments.cancel_payment_intent,
        shipping.quote_rates,
        shipping.buy_label,
        shipping.void_label,
        shipping.get_tracking,
        tiktok.get_tiktok_order,
        tiktok.ship_tiktok_package,
        notify.send_customer_email,
        notify.deliver_merchant_webhook,
    ]


def build_worker(client: Client, settings: Settings, resources: Resources) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities_for(settings, resources),  # type: ignore[arg-type]
        max_concurrent_activities=200,
    )


async def run(settings: Settings) -> None:
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_resources(settings) as resources:
        worker = build_worker(client, settings, resources)

        async def _client() -> Client:
            return client

        relay = OutboxRelay(resources.sessionmaker, _client, settings.task_queue)
        log.info("worker started", extra={"task_queue": settings.task_queue})
        async with worker:
            relay_task = asyncio.create_task(
                relay.run(settings.outbox_relay_interval_seconds, stop)
            )
            await stop.wait()
            await relay_task
        log.info("worker stopped")


def main() -> None:
    configure_logging("worker")
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
