"""Request metrics (Prometheus) and one structured log line per request.

The log line carries method, route template, status, duration and, where a
dependency put them on ``request.state``, ``merchant_id`` and ``order_id``.
Never headers, query strings or bodies: keys, tokens and PII stay out.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("api.request")

UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """A registry per app, so tests can build many apps in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.orders_created = Counter(
            "orders_created",
            "Orders accepted (idempotent replays not counted)",
            ["source"],
            registry=self.registry,
        )
        self.outbox_dispatch_failures = Counter(
            "outbox_dispatch_failures",
            "Background outbox dispatches that raised (the relay re-drives them)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestObservability:
    """Pure ASGI middleware: sees the final status, including unhandled errors (500)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_observe)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, duration: float) -> None:
        method = str(scope.get("method", ""))
        route = route_template(scope)
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(duration)
        state: dict[str, Any] = scope.get("state") or {}
        path_params: dict[str, Any] = scope.get("path_params") or {}
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(duration * 1000, 2),
        }
        merchant_id = state.get("merchant_id")
        order_id = state.get("order_id") or path_params.get("order_id")
        if merchant_id:
            fields["merchant_id"] = merchant_id
        if order_id:
            fields["order_id"] = order_id
        level = logging.ERROR if status >= 500 else logging.INFO
        log.log(level, f"{method} {route} {status}", extra=fields)
