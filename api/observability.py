"""Request metrics (Prometheus) and one structured log line per request.

The log line carries method, route template, status, duration, the request id
and, where a dependency put them on ``request.state``, ``merchant_id`` and
``order_id``. Never headers, query strings or bodies: keys, tokens and PII stay
out. The request id (the caller's ``X-Request-Id`` when it is a plain token, else a
new one) is answered in ``X-Request-Id`` and is on every line logged while the
request runs.

An unhandled error is answered 500 problem+json here and logged once, on the
request's line with its traceback: it does not reach Starlette's error
middleware or uvicorn, which would log it twice more.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem, unavailable
from db.metrics import BusinessCounts, business_counts
from fulfil.ids import new_id
from fulfil.logs import bound

log = logging.getLogger("api.request")

UNMATCHED_ROUTE = "unmatched"
REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            given = bytes(value).decode("latin-1")
            if _REQUEST_ID.match(given):
                return given
            break
    return new_id("req")


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
        self.webhooks_waiting = Gauge(
            "webhook_requests_waiting",
            "Verified webhook requests waiting for one of their provider's "
            "WEBHOOK_CONCURRENCY slots",
            ["provider"],
            registry=self.registry,
        )
        self.outbox_dispatch_failures = Counter(
            "outbox_dispatch_failures",
            "Background outbox dispatches that raised (the relay re-drives them)",
            registry=self.registry,
        )

        self.business = BusinessMetrics()
        self.registry.register(self.business)

    async def render(self, sessionmaker: async_sessionmaker[AsyncSession] | None = None) -> bytes:
        if sessionmaker is not None:
            await self.business.refresh(sessionmaker)
        return generate_latest(self.registry)


class BusinessMetrics(Collector):
    """Orders by status, labels bought, payouts by status with their amounts, deployments by
    outcome, merchant webhook endpoints parked: counted in PostgreSQL (so every process and
    restart agrees), at most once per ``max_age`` seconds however often Prometheus scrapes."""

    def __init__(self, max_age: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._counts: BusinessCounts | None = None
        self._read_at = float("-inf")
        self._max_age = max_age
        self._clock = clock

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        if self._clock() - self._read_at < self._max_age:
            return
        try:
            async with sessionmaker() as session:
                self._counts = await business_counts(session)
        except Exception:  # the request metrics still answer when PostgreSQL does not
            log.warning("business metrics could not be read", exc_info=True)
            return
        self._read_at = self._clock()

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        counts = self._counts
        if counts is None:
            return
        orders = GaugeMetricFamily(
            "fulfil_orders", "Orders by source and current status", labels=["source", "status"]
        )
        for (source, status), n in sorted(counts.orders.items()):
            orders.add_metric([source, status], n)
        yield orders
        yield CounterMetricFamily(
            "fulfil_labels_bought", "Shipping labels bought", value=counts.labels_bought
        )
        payouts = GaugeMetricFamily(
            "fulfil_payouts", "Payouts by current status", labels=["status", "currency"]
        )
        amounts = GaugeMetricFamily(
            "fulfil_payouts_seller_amount",
            "The sellers' share of payouts by current status, in minor units",
            labels=["status", "currency"],
        )
        released = CounterMetricFamily(
            "fulfil_payouts_released", "Payouts released to sellers", labels=["currency"]
        )
        released_amount = CounterMetricFamily(
            "fulfil_payouts_released_amount",
            "Amount transferred to sellers, in minor units",
            labels=["currency"],
        )
        for (status, currency), (n, amount) in sorted(counts.payouts.items()):
            payouts.add_metric([status, currency], n)
            amounts.add_metric([status, currency], amount)
            if status == "released":
                released.add_metric([currency], n)
                released_amount.add_metric([currency], amount)
        yield from (payouts, amounts, released, released_amount)
        deployments = GaugeMetricFamily(
            "fulfil_deployments", "Package deployments by outcome", labels=["status"]
        )
        for status, n in sorted(counts.deployments.items()):
            deployments.add_metric([status], n)
        yield deployments
        yield GaugeMetricFamily(
            "fulfil_webhook_endpoints_parked",
            "Merchant webhook endpoints parked after failing (their deliveries wait)",
            value=counts.webhook_endpoints_parked,
        )


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestObservability:
    """Pure ASGI middleware: sees the final status, including unhandled errors (500)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, deadline: Callable[[], float]) -> None:
        self.app = app
        self.metrics = metrics
        # Seconds a request may take before it is answered 503 (a hung database, say).
        self._deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        responded = False
        rid = request_id(scope)
        error: BaseException | None = None

        async def send_and_observe(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = int(message["status"])
                responded = True
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (REQUEST_ID_HEADER, rid.encode())],
                }
            await send(message)

        with bound(request_id=rid):
            try:
                async with asyncio.timeout(self._deadline()):
                    await self.app(scope, receive, send_and_observe)
            except Exception as exc:
                outage = unavailable(exc)
                # An outage is expected and logged without a traceback; anything else is a bug.
                error = None if outage is not None else exc
                if outage is not None:
                    log.warning(
                        "dependency unavailable",
                        extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
                    )
                if not responded:
                    problem = outage or _internal_error()
                    await problem.response()(scope, receive, send_and_observe)
            finally:
                self._observe(scope, status, time.perf_counter() - started, error)

    def _observe(
        self, scope: Scope, status: int, duration: float, error: BaseException | None = None
    ) -> None:
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
        level = (
            logging.ERROR
            if error is not None
            else (logging.WARNING if status >= 500 else logging.INFO)
        )
        log.log(level, f"{method} {route} {status}", extra=fields, exc_info=error)


def _internal_error() -> Problem:
    return Problem(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "An unexpected error occurred. It has been logged.",
        slug="internal-error",
    )
