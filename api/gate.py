"""The API's front door: size limits, who is calling, rate limits and security headers,
all decided before the body is read.

A pure ASGI middleware, outermost, so nothing behind it reads a byte it refuses:

1. A body over the limit (1 MiB, 256 KiB on webhooks; settings) is refused
   with 413 from its ``Content-Length``, or, when chunked, as soon as the bytes
   read pass the limit.
2. Under ``/api/`` the bearer key is checked before the body is read: ops (the
   ``OPS_API_KEY``) or a merchant's owner or staff key (``api_keys``, sha256).
   A missing or unknown key is 401.
3. Each merchant key gets ``RATE_LIMIT_PER_MINUTE`` requests a minute (ops is
   exempt); the unauthenticated surface (no or a bad key, the docs) is limited
   per client IP (``ANONYMOUS_RATE_LIMIT`` per ``ANONYMOUS_RATE_WINDOW_SECONDS``).
   Webhooks are not limited: providers retry, and a duplicate changes nothing.
   Probes (``/livez``, ``/readyz``, ``/metrics``) are not limited either.
4. Every answer carries security headers.
5. ``/codec/`` (the Temporal UI's codec endpoint) answers CORS for the UI's origins and takes
   ops only: the ops key, an OIDC access token passed by the UI, or (dev) the UI's origin
   (``api.codec_auth``). Its bodies may be larger (``MAX_CODEC_BODY_BYTES``).

The identity found is put on ``request.state.identity`` for the route's
dependencies (``api.deps``), which load the merchant and check the role.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.codec_auth import (
    CODEC_PREFIX,
    PREFLIGHT_HEADERS,
    OidcVerifier,
    TokenRefused,
    cors_headers,
)
from api.keys import hash_api_key
from api.problems import Problem, forbidden, unauthorized
from api.rate_limit import RateLimiter
from db import api_keys
from fulfil.settings import Settings

Role = Literal["ops", "owner", "staff"]

WEBHOOK_PATHS = ("/webhooks/", "/api/checkout/webhook")
PROBE_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
DOC_PATHS = ("/docs", "/redoc", "/openapi.json")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# How long a looked-up key is trusted before it is looked up again (revocation delay).
KEY_CACHE_SECONDS = 5.0

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
API_ONLY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


@dataclass(frozen=True)
class Identity:
    """Who is calling: ops, or a merchant's owner or staff key."""

    role: Role
    merchant_id: str | None = None
    key_id: str | None = None


OPS = Identity(role="ops")
# Ops, as the codec knows them: through the UI's login, or (dev) the UI's origin.
CODEC_OIDC = Identity(role="ops", key_id="oidc")
CODEC_UI = Identity(role="ops", key_id="dev-ui-origin")


def is_webhook(path: str) -> bool:
    return path.startswith(WEBHOOK_PATHS[0]) or path == WEBHOOK_PATHS[1]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = bytes(value).decode("latin-1")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class KeyDirectory:
    """Finds the identity behind a bearer key; lookups are cached for a few seconds."""

    def __init__(
        self, settings: Settings, sessionmaker: Callable[[], async_sessionmaker[AsyncSession]]
    ) -> None:
        self._ops_key = settings.ops_api_key.encode()
        self._sessionmaker = sessionmaker
        self._cache: dict[str, tuple[float, Identity | None]] = {}
        self._touched: dict[str, float] = {}

    def due_for_touch(self, key_id: str) -> bool:
        """Whether to record a use of ``key_id`` now: once per ``LAST_USED_RESOLUTION`` per
        process (the database keeps the resolution across processes)."""
        now = time.monotonic()
        last = self._touched.get(key_id)
        if last is not None and now - last < api_keys.LAST_USED_RESOLUTION.total_seconds():
            return False
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[key_id] = now
        return True

    def forget(self, key_hash: str) -> None:
        """A revoked key stops working here at once (other API processes: within the cache
        time, ``KEY_CACHE_SECONDS``)."""
        self._cache.pop(key_hash, None)

    async def identify(self, token: str) -> Identity | None:
        if hmac.compare_digest(token.encode(), self._ops_key):
            return OPS
        digest = hash_api_key(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        async with self._sessionmaker()() as session:
            key = await api_keys.find_live_key(session, digest)
        found = None
        if key is not None:
            role: Role = "owner" if key.role == "owner" else "staff"
            found = Identity(role=role, merchant_id=key.merchant_id, key_id=key.id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, found)
        return found


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Callable[[], Settings],
        keys: Callable[[], KeyDirectory],
        limiter: Callable[[], RateLimiter],
        oidc: Callable[[], OidcVerifier],
    ) -> None:
        self.app = app
        self._settings = settings
        self._keys = keys
        self._limiter = limiter
        self._oidc = oidc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self._settings()
        path: str = scope["path"]
        send = self._with_headers(send, path, settings)
        if path.startswith(CODEC_PREFIX):
            await self._codec(scope, receive, send, settings)
            return
        webhook = is_webhook(path)
        limit = settings.max_webhook_body_bytes if webhook else settings.max_body_bytes

        refusal = self._declared_size(scope, limit)
        if refusal is None and path.startswith("/api/") and not webhook:
            refusal = await self._authenticate(scope, settings)
        elif refusal is None and path.startswith(DOC_PATHS):
            refusal = await self._limit_anonymous(scope, settings)
        if refusal is None and scope.get("method") in BODY_METHODS:
            receive, refusal = await self._read_within(receive, limit, scope)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    # --- the codec endpoint ----------------------------------------------------------

    async def _codec(self, scope: Scope, receive: Receive, send: Send, settings: Settings) -> None:
        origin = header(scope, b"origin")
        cors = cors_headers(origin, settings)
        allowed_origin = len(cors) > 1

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        if scope.get("method") == "OPTIONS":
            if not allowed_origin:
                await forbidden("This origin may not call the codec.").response()(
                    scope, receive, send
                )
                return
            headers = [*cors, *PREFLIGHT_HEADERS]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope.get("method") != "POST":
            # Only POST is served here; the router answers 405 (or 404) and reads no body.
            await self.app(scope, receive, send_with_cors)
            return
        limit = settings.max_codec_body_bytes
        refusal = self._declared_size(scope, limit)
        if refusal is None:
            refusal = await self._authenticate_codec(scope, settings, allowed_origin)
        if refusal is None and scope.get("method") in BODY_METHODS:
            receive, refusal = await self._read_within(receive, limit, scope)
        if refusal is not None:
            await refusal.response()(scope, receive, send_with_cors)
            return
        await self.app(scope, receive, send_with_cors)

    async def _authenticate_codec(
        self, scope: Scope, settings: Settings, allowed_origin: bool
    ) -> Problem | None:
        token = bearer_token(scope)
        if token is None:
            if settings.codec_open_to_ui and allowed_origin:
                scope.setdefault("state", {})["identity"] = CODEC_UI
                return None
            limited = await self._limit_anonymous(scope, settings)
            return limited or unauthorized(
                "The codec needs the ops key or the UI's OIDC access token."
            )
        identity = await self._keys().identify(token)
        if identity is not None:
            if identity.role != "ops":
                return forbidden("The codec is for ops: payloads hold every merchant's data.")
            scope.setdefault("state", {})["identity"] = identity
            return None
        oidc = self._oidc()
        if oidc.enabled:
            try:
                await oidc.verify(token)
            except TokenRefused as refused:
                if refused.forbidden:
                    return forbidden(f"The codec is for ops: {refused}.")
            else:
                scope.setdefault("state", {})["identity"] = CODEC_OIDC
                return None
        limited = await self._limit_anonymous(scope, settings)
        return limited or unauthorized("Invalid ops key or access token.")

    # --- size ---------------------------------------------------------------------

    def _declared_size(self, scope: Scope, limit: int) -> Problem | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return Problem(
                        HTTPStatus.BAD_REQUEST,
                        "Content-Length is not a number.",
                        slug="bad-request",
                    )
                if declared > limit:
                    return too_large(limit)
        return None

    async def _read_within(
        self, receive: Receive, limit: int, scope: Scope
    ) -> tuple[Receive, Problem | None]:
        """Read the body now, refusing it once it passes ``limit``; replay it to the app."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message], receive), None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return receive, too_large(limit)
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        return _replay([{"type": "http.request", "body": body, "more_body": False}], receive), None

    # --- who -----------------------------------------------------------------------

    async def _authenticate(self, scope: Scope, settings: Settings) -> Problem | None:
        token = bearer_token(scope)
        identity = await self._keys().identify(token) if token else None
        if identity is None:
            limited = await self._limit_anonymous(scope, settings)
            if limited is not None:
                return limited
            if token is None:
                return unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
            return unauthorized("Invalid API key.")
        scope.setdefault("state", {})["identity"] = identity
        if identity.role == "ops" or identity.key_id is None:
            return None
        wait = await self._limiter().hit(
            f"key:{identity.key_id}", settings.rate_limit_per_minute, 60
        )
        return too_many(wait) if wait is not None else None

    async def _limit_anonymous(self, scope: Scope, settings: Settings) -> Problem | None:
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        wait = await self._limiter().hit(
            f"ip:{ip}", settings.anonymous_rate_limit, settings.anonymous_rate_window_seconds
        )
        return too_many(wait) if wait is not None else None

    # --- headers -------------------------------------------------------------------

    def _with_headers(self, send: Send, path: str, settings: Settings) -> Send:
        extra = list(SECURITY_HEADERS)
        if not path.startswith(DOC_PATHS[:2]):
            extra += API_ONLY_HEADERS
        if settings.env == "production":
            extra.append(HSTS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        return send_with_headers


def too_large(limit: int) -> Problem:
    return Problem(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        f"The body is larger than {limit} bytes.",
        slug="body-too-large",
    )


def too_many(wait: int) -> Problem:
    return Problem(
        HTTPStatus.TOO_MANY_REQUESTS,
        f"Too many requests; retry in {wait} s.",
        slug="rate-limited",
        headers={"Retry-After": str(wait)},
    )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` first, then whatever the client sends next."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
