"""Control endpoints for demos and tests, under ``/_sandbox``.

Provider-specific controls live beside their provider (``/_sandbox/stripe/...``
in ``stripe_api``); fault rules in ``faults``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from sandbox.state import StateDep, rfc3339

router = APIRouter(prefix="/_sandbox", tags=["sandbox"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ledger")
async def ledger(state: StateDep) -> dict[str, list[dict[str, Any]]]:
    """What the providers did: ``payment_intents``, ``refunds``, ``transfers``, ``accounts``,
    ``disputes``, ``labels``, ``label_refunds``, ``tiktok_shipments``, ``cloudflare_resources``,
    ``emails`` (always), other kinds when used, and ``webhook_deliveries``."""
    return {**state.ledger.snapshot(), "webhook_deliveries": state.webhooks.deliveries()}


@router.post("/reset")
async def reset(state: StateDep) -> dict[str, str]:
    state.reset()
    return {"status": "reset"}


# ------------------------------------------------------------------ hooks

_RECORDED_METHODS = ["POST", "PUT", "PATCH", "DELETE"]


async def record_hook(request: Request, name: str, state: StateDep, fail: int = 0) -> Response:
    """A stand-in endpoint: records the request; ``?fail=N`` answers 500 to the first N."""
    status = state.hooks.record(
        name,
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers=request.headers,
        body=await request.body(),
        fail_first=fail,
    )
    content = b'{"received": true}' if status < 400 else b'{"error": "injected failure"}'
    return Response(content, status_code=status, media_type="application/json")


for _method in _RECORDED_METHODS:  # one route per method: distinct OpenAPI operation ids
    router.add_api_route(
        "/hooks/{name:path}", record_hook, methods=[_method], name=f"record_hook_{_method.lower()}"
    )


@router.get("/hooks/{name:path}")
async def list_hooks(name: str, state: StateDep) -> list[dict[str, Any]]:
    """``[{"method", "path", "query", "headers", "body", "at", "status"}]``, oldest first."""
    return state.hooks.requests(name)


# ------------------------------------------------------------------ clock


class ClockAdvanceIn(BaseModel):
    seconds: float = Field(ge=0)


class ClockOut(BaseModel):
    offset_seconds: float
    now: str
    now_unix: float
    pace: float


def _clock(state: StateDep) -> ClockOut:
    now = state.clock.now()
    return ClockOut(
        offset_seconds=state.clock.offset_seconds,
        now=rfc3339(now),
        now_unix=now,
        pace=state.settings.sandbox_clock_pace,
    )


@router.get("/clock")
async def get_clock(state: StateDep) -> ClockOut:
    return _clock(state)


@router.post("/clock/advance")
async def advance_clock(advance: ClockAdvanceIn, state: StateDep) -> ClockOut:
    await state.clock.advance(advance.seconds)
    return _clock(state)
