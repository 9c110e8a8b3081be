"""The FastAPI application: ``uvicorn api.app:app``.

:func:`create_app` builds an app for given settings (tests build their own);
its lifespan opens the PostgreSQL engine, Redis, a lazy Temporal client and the
outbox relay, and closes them at shutdown. Nothing connects at import time and
the API starts and takes orders while Temporal is down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from redis.asyncio import Redis

from api.observability import Metrics, RequestObservability
from api.problems import PROBLEM_JSON, install_problem_handlers
from api.resources import BackgroundDispatch, LazyTemporalClient, Resources
from api.routes import catalog, health, merchants, orders, webhooks
from db.session import make_engine, make_sessionmaker
from fulfil.logs import configure_logging
from fulfil.outbox import OutboxRelay
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
]

SHUTDOWN_DRAIN_SECONDS = 5.0


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app for ``settings`` (default: the environment's)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("api")
        config = settings or get_settings()
        engine = make_engine(config.database_url)
        sessionmaker = make_sessionmaker(engine)
        redis = Redis.from_url(
            config.redis_url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
        )
        client_provider = LazyTemporalClient(config)
        relay = OutboxRelay(sessionmaker, client_provider, config.task_queue)
        app.state.resources = Resources(
            settings=config,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            temporal=client_provider,
            relay=relay,
            dispatch=BackgroundDispatch(relay, metrics),
            metrics=metrics,
        )
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
    )
    app.state.metrics = metrics
    install_problem_handlers(app)
    app.add_middleware(RequestObservability, metrics=metrics)
    for module in (merchants, catalog, orders, webhooks, health):
        app.include_router(module.router)
    _install_openapi(app)
    return app


def _install_openapi(app: FastAPI) -> None:
    """Error responses documented as ``application/problem+json`` only."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for response in operation.get("responses", {}).values():
                    content = response.get("content", {})
                    if PROBLEM_JSON in content and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


app = create_app()
