"""Fault injection into provider calls.

``POST /_sandbox/faults`` adds a rule; :class:`FaultInjectionMiddleware` applies
the rules to every request under a provider prefix (``/stripe``, ``/shippo``,
``/tiktok``, ``/cloudflare``, ``/email``). A matching request waits
``latency_ms``, then (with probability ``rate``, at most ``times`` times)
answers ``status`` with an error body shaped like that provider's errors:

- ``when="before"``: the provider does nothing;
- ``when="after"``: the provider does the work, then the response is replaced
  by the error (a lost response: a retry must not do the work twice);
- ``status=0``: the connection is dropped instead of answering.

A rule without ``status`` only adds latency.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.state import FaultRule, Provider, SandboxState, StateDep, new_id

# First path segment → provider.
PROVIDER_PREFIXES: dict[str, Provider] = {
    "stripe": "stripe",
    "shippo": "shippo",
    "tiktok": "tiktok",
    "cloudflare": "cloudflare",
    "email": "email",
}

_REASONS = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    422: "Unprocessable entity",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def provider_for_path(path: str) -> Provider | None:
    first = path.lstrip("/").split("/", 1)[0]
    return PROVIDER_PREFIXES.get(first)


def fault_error_body(provider: Provider, status: int) -> dict[str, Any]:
    """An error body as the real provider would send it for ``status``."""
    message = f"{_REASONS.get(status, 'Error')} (injected by the sandbox)"
    if provider == "stripe":
        if status == 429:
            kind, code = "invalid_request_error", "rate_limit"
        elif status == 402:
            kind, code = "card_error", "card_declined"
        elif status >= 500 or status < 400:
            kind, code = "api_error", None
        else:
            kind, code = "invalid_request_error", None
        error: dict[str, Any] = {"type": kind, "message": message}
        if code is not None:
            error["code"] = code
        return {"error": error}
    if provider == "shippo":
        return {"detail": message}
    if provider == "tiktok":
        return {
            "code": 10_000_000 + status,
            "message": message,
            "request_id": secrets.token_hex(16),
            "data": None,
        }
    if provider == "cloudflare":
        return {
            "success": False,
            "errors": [{"code": 10_000 + status, "message": message}],
            "messages": [],
            "result": None,
        }
    return {"error": {"message": message, "status": status}}


def _fault_headers(provider: Provider, body: bytes) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-sandbox-fault", b"true"),
    ]
    if provider == "stripe":
        headers.append((b"request-id", new_id("req", 14).encode()))
    return headers


class FaultInjectionMiddleware:
    """Pure ASGI middleware, so a lost response (``when="after"``) is easy to fake."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        provider = provider_for_path(path)
        rule = (
            self.state.faults.match(provider, scope["method"], path)
            if provider is not None
            else None
        )
        if provider is None or rule is None:
            await self.app(scope, receive, send)
            return

        if rule.latency_ms > 0:
            await asyncio.sleep(rule.latency_ms / 1000)
        if not rule.should_fire():
            await self.app(scope, receive, send)
            return
        assert rule.status is not None  # should_fire() is False without a status

        if rule.when == "after":
            # Let the provider do the work; throw its answer away.
            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)

        if rule.status == 0:
            # Start a response and never finish it: the server closes the
            # connection and the client sees a dropped connection.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"1000")],
                }
            )
            return

        body = json.dumps(fault_error_body(provider, rule.status)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": rule.status,
                "headers": _fault_headers(provider, body),
            }
        )
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- control API

router = APIRouter(prefix="/_sandbox/faults", tags=["sandbox"])


class FaultRuleIn(BaseModel):
    provider: Provider
    method: str | None = None
    path: str | None = Field(default=None, description="substring of the request path")
    status: int | None = Field(
        default=None, description="status to answer; 0 drops the connection; none = latency only"
    )
    times: int | None = Field(default=None, ge=1, description="at most this many failures")
    rate: float = Field(default=1.0, ge=0.0, le=1.0, description="probability of failing")
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    when: Literal["before", "after"] = "before"

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: int | None) -> int | None:
        if value is not None and value != 0 and not 100 <= value <= 599:
            raise ValueError("status must be 0 (drop the connection) or an HTTP status")
        return value


@router.post("", status_code=201)
async def add_fault(rule_in: FaultRuleIn, state: StateDep) -> dict[str, Any]:
    rule = state.faults.add(FaultRule(id=new_id("flt", 12), **rule_in.model_dump()))
    return {"id": rule.id, **rule_in.model_dump()}


@router.get("")
async def list_faults(state: StateDep) -> list[dict[str, Any]]:
    return state.faults.as_list()


@router.delete("")
async def clear_faults(state: StateDep) -> dict[str, int]:
    return {"cleared": state.faults.clear()}
