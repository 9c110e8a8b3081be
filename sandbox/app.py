"""The provider sandbox app: ``uvicorn --factory sandbox.app:create_app --port 8100``.

Each provider is one module with its own router (``stripe_api``,
``email_api``, ``shippo_api``, ``tiktok_api``, ``cloudflare_api``), included
here under its prefix. All state is in memory on
``app.state.sandbox``, so ``create_app()`` gives an independent sandbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fulfil.settings import Settings, get_settings
from sandbox import (
    cloudflare_api,
    control,
    email_api,
    faults,
    shippo_api,
    stripe_api,
    tiktok_api,
)
from sandbox.faults import FaultInjectionMiddleware
from sandbox.state import SandboxState


def create_app(settings: Settings | None = None) -> FastAPI:
    state = SandboxState(settings or get_settings())
    shippo_api.install(state)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tracking = shippo_api.start_tracking(state)
        yield
        await shippo_api.stop_tracking(tracking)
        await state.aclose()

    app = FastAPI(
        title="Provider sandbox",
        summary="Stateful stand-ins for Stripe, Shippo, TikTok Shop, Cloudflare and email",
        lifespan=lifespan,
    )
    app.state.sandbox = state
    app.add_middleware(FaultInjectionMiddleware, state=state)
    app.include_router(control.router)
    app.include_router(faults.router)
    app.include_router(stripe_api.router)
    app.include_router(stripe_api.control_router)
    app.include_router(email_api.router)
    app.include_router(shippo_api.router)
    app.include_router(shippo_api.control_router)
    app.include_router(tiktok_api.router)
    app.include_router(tiktok_api.control_router)
    app.include_router(cloudflare_api.router)
    app.include_router(cloudflare_api.control_router)
    return app
