"""The FastAPI application: ``uvicorn api.app:app``.

:func:`create_app` builds an app for given settings (tests build their own);
its lifespan opens the PostgreSQL engine, Redis, a lazy Temporal client and the
outbox relay, and closes them at shutdown. Nothing connects at import time and
the API starts and takes orders while Temporal is down.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from redis.asyncio import Redis

import api.routes
import api.webhooks
from activities.payments import build_stripe
from activities.vault import TokenVault
from api.codec_auth import OidcVerifier
from api.deps import reject_unknown_query
from api.gate import Gate, KeyDirectory
from api.observability import Metrics, RequestObservability
from api.openapi import install_openapi
from api.problems import install_problem_handlers
from api.rate_limit import RateLimiter
from api.resources import BackgroundDispatch, LazyTemporalClient, Resources, WebhookSlots
from db.outbox import OutboxRelay
from db.session import make_engine, make_read_sessionmaker, make_sessionmaker
from fulfil.logs import configure_logging
from fulfil.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Merchants, catalogue and storefront orders of the fulfilment engine, and the
provider webhooks it accepts. Authenticate with `Authorization: Bearer <key>`
(the ops key or a merchant's key). Errors are `application/problem+json`
(RFC 9457). Money is integers in minor units plus a currency.
"""

TAGS = [
    {"name": "merchants", "description": "Created by ops; each merchant manages itself."},
    {"name": "catalogue", "description": "Products with stock, and discount codes."},
    {"name": "orders", "description": "Storefront orders: placement, reads, cancellation."},
    {"name": "webhooks", "description": "Signed provider events (Stripe)."},
    {"name": "health", "description": "Liveness, readiness and metrics."},
    {
        "name": "codec",
        "description": "The Temporal codec-server protocol, for the Temporal UI and ops.",
    },
]

SHUTDOWN_DRAIN_SECONDS = 5.0


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app for ``settings`` (default: the environment's)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("api")
        config = settings or get_settings()
        engine = make_engine(
            config.database_url, connect_timeout=config.database_connect_timeout_seconds
        )
        sessionmaker = make_sessionmaker(engine)
        redis = Redis.from_url(
            config.redis_url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
        )
        client_provider = LazyTemporalClient(config)
        relay = OutboxRelay(sessionmaker, client_provider, config.task_queue)
        redis_limiter = RateLimiter(redis)
        app.state.resources = Resources(
            settings=config,
            engine=engine,
            sessionmaker=sessionmaker,
            read_sessionmaker=make_read_sessionmaker(engine),
            redis=redis,
            temporal=client_provider,
            relay=relay,
            dispatch=BackgroundDispatch(relay, metrics),
            metrics=metrics,
            keys=KeyDirectory(config, lambda: sessionmaker),
            limiter=redis_limiter,
            stripe=build_stripe(config),
            vault=TokenVault(redis, config.vault_key),
            oidc=OidcVerifier(config),
            webhooks=WebhookSlots(
                config.webhook_concurrency, sessionmaker, metrics.webhooks_waiting
            ),
        )
        # Built now, not by the first request with a query string (reject_unknown_query
        # reads it): that request paid seconds for it.
        app.openapi()
        log.info(
            "api started",
            extra={"env": config.env, "temporal_address": config.temporal_address},
        )
        try:
            yield
        finally:
            await app.state.resources.dispatch.drain(SHUTDOWN_DRAIN_SECONDS)
            await redis.aclose()
            await engine.dispose()
            log.info("api stopped")

    app = FastAPI(
        title="Fulfil engine API",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.metrics = metrics
    install_problem_handlers(app)

    def resources() -> Resources:
        found: Resources = app.state.resources
        return found

    # Added first, so it runs inside the observability middleware: refusals are logged too.
    app.add_middleware(
        Gate,
        settings=lambda: resources().settings,
        keys=lambda: resources().keys,
        limiter=lambda: resources().limiter,
        oidc=lambda: resources().oidc,
    )
    app.add_middleware(
        RequestObservability,
        metrics=metrics,
        deadline=lambda: resources().settings.api_request_deadline_seconds,
    )
    for router in routers():
        app.include_router(router)
    install_openapi(app)
    return app


def routers() -> list[APIRouter]:
    """The ``router`` of every module in ``api/routes/`` and ``api/webhooks/``, by module name:
    a new resource or provider needs no line here."""
    found = []
    for package in (api.routes, api.webhooks):
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            loaded = importlib.import_module(f"{package.__name__}.{module.name}")
            router = getattr(loaded, "router", None)
            if isinstance(router, APIRouter):
                found.append(router)
    return found


app = create_app()
