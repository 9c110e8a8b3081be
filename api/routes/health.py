"""Liveness, readiness (PostgreSQL, Redis, Temporal) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from http import HTTPStatus

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api.deps import ResourcesDep
from api.problems import Problem, problem_responses
from api.resources import Resources
from api.schemas import Liveness, Readiness

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/livez", summary="The process is up (checks nothing else)")
async def livez() -> Liveness:
    return Liveness()


async def _postgres(resources: Resources) -> None:
    async with resources.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _redis(resources: Resources) -> None:
    await resources.redis.ping()


async def _temporal(resources: Resources) -> None:
    client = await resources.temporal()
    healthy = await client.service_client.check_health(
        timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)
    )
    if not healthy:
        raise RuntimeError("Temporal reports not serving")


CHECKS: dict[str, Callable[[Resources], Awaitable[None]]] = {
    "postgres": _postgres,
    "redis": _redis,
    "temporal": _temporal,
}


async def _check(probe: Callable[[Resources], Awaitable[None]], resources: Resources) -> str:
    try:
        await asyncio.wait_for(probe(resources), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception:
        return "down"
    return "ok"


@router.get(
    "/readyz",
    summary="Ready to serve: PostgreSQL, Redis and Temporal answer",
    responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
)
async def readyz(resources: ResourcesDep) -> Readiness:
    results = await asyncio.gather(*(_check(probe, resources) for probe in CHECKS.values()))
    checks = dict(zip(CHECKS, results, strict=True))
    down = [name for name, result in checks.items() if result != "ok"]
    if down:
        raise Problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"Not ready: {', '.join(down)} down.",
            slug="not-ready",
            extra={"checks": checks},
        )
    return Readiness(status="ok", checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(resources: ResourcesDep) -> Response:
    body = await resources.metrics.render(resources.sessionmaker)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
