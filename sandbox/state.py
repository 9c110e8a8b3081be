"""What the sandbox remembers, shared by every provider module.

One :class:`SandboxState` lives on ``app.state.sandbox`` (in memory, one per
app, so tests can run independent sandboxes side by side). It holds:

- the :class:`Ledger`: what the providers did, as the control API shows it;
- the :class:`FaultRules` injected through ``/_sandbox/faults``;
- the :class:`SandboxClock`: real time plus an offset that only moves forward,
  with listeners so a provider can react when it moves;
- the :class:`HooksRecorder` behind ``/_sandbox/hooks/{name}``;
- the :class:`WebhookSender` that delivers signed webhooks to the engine in
  the background, retrying with backoff;
- per-provider stores, created on first use by :meth:`SandboxState.store`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import random
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import httpx
from fastapi import Depends, Request

from fulfil.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

Provider = Literal["stripe", "shippo", "tiktok", "cloudflare", "email"]

# The sections ``GET /_sandbox/ledger`` always shows, even when empty.
LEDGER_KINDS: tuple[str, ...] = (
    "payment_intents",
    "refunds",
    "transfers",
    "accounts",
    "disputes",
    "labels",
    "label_refunds",
    "tiktok_shipments",
    "cloudflare_resources",
    "emails",
)

_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """A provider-looking id such as ``pi_3MtwBwLkdIwHu7ix28a3tqPa``."""
    return prefix + "_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def rfc3339(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------- ledger


class Ledger:
    """Entries by kind and id, in the order they were first recorded.

    Providers call :meth:`put` after every change of an object, so the entry
    always shows the latest status. Every entry carries ``id``, ``status`` and
    the ``idempotency_key`` (business key) it was made for.
    """

    def __init__(self) -> None:
        self._sections: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in LEDGER_KINDS}

    def put(self, kind: str, entry_id: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        section = self._sections.setdefault(kind, {})
        merged = {"id": entry_id, **section.get(entry_id, {}), **copy.deepcopy(dict(entry))}
        section[entry_id] = merged
        return merged

    def get(self, kind: str, entry_id: str) -> dict[str, Any] | None:
        entry = self._sections.get(kind, {}).get(entry_id)
        return copy.deepcopy(entry) if entry is not None else None

    def entries(self, kind: str) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self._sections.get(kind, {}).values()))

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {kind: self.entries(kind) for kind in self._sections}


# --------------------------------------------------------------------- faults


@dataclass
class FaultRule:
    id: str
    provider: Provider
    status: int | None
    method: str | None = None
    path: str | None = None
    times: int | None = None
    rate: float = 1.0
    latency_ms: int = 0
    when: Literal["before", "after"] = "before"
    fired: int = 0

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, provider: str, method: str, path: str) -> bool:
        if self.spent or provider != self.provider:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path in path

    def should_fire(self) -> bool:
        """Decide (and count) whether this match answers the injected status."""
        if self.status is None or self.spent:
            return False
        if self.rate < 1.0 and random.random() >= self.rate:
            return False
        self.fired += 1
        return True


class FaultRules:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        self._rules.append(rule)
        return rule

    def clear(self) -> int:
        count = len(self._rules)
        self._rules.clear()
        return count

    def match(self, provider: str, method: str, path: str) -> FaultRule | None:
        """The oldest live rule matching the request, if any."""
        return next((r for r in self._rules if r.matches(provider, method, path)), None)

    def as_list(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self._rules]


# ---------------------------------------------------------------------- clock

# Called after the clock moved: (seconds it moved, new sandbox unix time).
ClockListener = Callable[[float, float], Awaitable[None]]


class SandboxClock:
    """Sandbox time = real time elapsed * ``pace`` + manual advances.

    ``pace`` is sandbox seconds per real second (``SANDBOX_CLOCK_PACE``): 1
    follows real time, 60 makes a sandbox hour pass in a real minute, 0 stops
    the clock between manual advances. The clock starts at real time (and
    restarts there on :meth:`reset`) and only moves forward.

    Providers that simulate the passing of time (tracking events, holds)
    read :meth:`now` and register a listener with :meth:`on_advance` to act
    when ``POST /_sandbox/clock/advance`` moves the clock; with a pace,
    they also poll :meth:`now`.
    """

    def __init__(self, pace: float = 1.0, real_time: Callable[[], float] = time.time) -> None:
        if pace < 0:
            raise ValueError("the sandbox clock pace cannot be negative")
        self.pace = pace
        self._real_time = real_time
        self._origin = real_time()
        self.offset_seconds = 0.0
        self._listeners: list[ClockListener] = []

    def now(self) -> float:
        real = self._real_time()
        return self._origin + (real - self._origin) * self.pace + self.offset_seconds

    def on_advance(self, listener: ClockListener) -> None:
        self._listeners.append(listener)

    async def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self.offset_seconds += seconds
        now = self.now()
        for listener in list(self._listeners):
            try:
                await listener(seconds, now)
            except Exception:
                logger.exception("sandbox clock listener failed")
        return now

    def reset(self) -> None:
        """Back to real time; listeners stay registered (they are wiring, not state)."""
        self._origin = self._real_time()
        self.offset_seconds = 0.0


# ------------------------------------------------------------- hooks recorder


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str
    at: str
    status: int


class HooksRecorder:
    """Stand-in merchant endpoints: remembers every request, fails the first N on demand."""

    def __init__(self) -> None:
        self._requests: dict[str, list[RecordedRequest]] = {}

    def record(
        self,
        name: str,
        *,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        fail_first: int = 0,
    ) -> int:
        """Record one request and return the status code to answer."""
        calls = self._requests.setdefault(name, [])
        status = 500 if len(calls) < fail_first else 200
        calls.append(
            RecordedRequest(
                method=method,
                path=path,
                query=query,
                headers=dict(headers),
                body=body.decode("utf-8", errors="replace"),
                at=rfc3339(time.time()),
                status=status,
            )
        )
        return status

    def requests(self, name: str) -> list[dict[str, Any]]:
        return [asdict(r) for r in self._requests.get(name, [])]

    def clear(self) -> None:
        self._requests.clear()


# ----------------------------------------------------------- webhook delivery

# Computes the signature headers of one attempt from the raw body (called per
# attempt, so a timestamped signature is fresh on every retry).
Signer = Callable[[bytes], Mapping[str, str]]
# Told the outcome of every attempt: (HTTP status or None, error text or None).
AttemptObserver = Callable[[int | None, str | None], None]


@dataclass
class WebhookDelivery:
    id: str
    url: str
    description: str
    status: Literal["pending", "delivered", "failed", "cancelled"] = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    created: str = field(default_factory=lambda: rfc3339(time.time()))


class WebhookSender:
    """Delivers webhooks in background tasks, never blocking the request that caused them.

    A delivery is retried on connection errors and non-2xx answers, with
    exponential backoff, at most ``max_attempts`` times. :meth:`send` is the
    same delivery awaited in place, and :meth:`spawn` runs a sequence of
    them (a provider's redeliveries) as a background task that
    :meth:`cancel_all` and :meth:`aclose` stop like the others.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 6,
        initial_backoff: float = 0.25,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._deliveries: list[WebhookDelivery] = []
        self._ids = itertools.count(1)

    def deliver(
        self,
        url: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        sign: Signer | None = None,
        description: str = "",
    ) -> WebhookDelivery:
        """POST ``body`` to ``url`` in the background; must be called inside the event loop."""
        delivery = WebhookDelivery(id=f"whd_{next(self._ids)}", url=url, description=description)
        self._deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(
            self._deliver(delivery, body, dict(headers or {}), sign)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def send(
        self,
        url: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        sign: Signer | None = None,
        description: str = "",
        max_attempts: int | None = None,
        on_attempt: AttemptObserver | None = None,
    ) -> WebhookDelivery:
        """Deliver like :meth:`deliver`, but return only when delivered or given up."""
        delivery = WebhookDelivery(id=f"whd_{next(self._ids)}", url=url, description=description)
        self._deliveries.append(delivery)
        await self._deliver(
            delivery,
            body,
            dict(headers or {}),
            sign,
            max_attempts=max_attempts,
            on_attempt=on_attempt,
        )
        return delivery

    def spawn(self, deliveries: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``deliveries`` (a coroutine awaiting :meth:`send`) in the background."""
        task = asyncio.get_running_loop().create_task(deliveries)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(
        self,
        delivery: WebhookDelivery,
        body: bytes,
        headers: dict[str, str],
        sign: Signer | None,
        *,
        max_attempts: int | None = None,
        on_attempt: AttemptObserver | None = None,
    ) -> None:
        client = self._http_client()
        backoff = self.initial_backoff
        attempts_allowed = max_attempts or self.max_attempts
        try:
            while delivery.attempts < attempts_allowed:
                delivery.attempts += 1
                attempt_headers = {"Content-Type": "application/json", **headers}
                if sign is not None:
                    attempt_headers.update(sign(body))
                try:
                    response = await client.post(
                        delivery.url, content=body, headers=attempt_headers
                    )
                except httpx.HTTPError as exc:
                    delivery.last_status_code = None
                    delivery.last_error = f"{type(exc).__name__}: {exc}"
                else:
                    delivery.last_status_code = response.status_code
                    delivery.last_error = None
                if on_attempt is not None:
                    on_attempt(delivery.last_status_code, delivery.last_error)
                if delivery.last_status_code is not None and 200 <= delivery.last_status_code < 300:
                    delivery.status = "delivered"
                    return
                if delivery.attempts < attempts_allowed:
                    await asyncio.sleep(backoff * (0.8 + 0.4 * random.random()))
                    backoff = min(backoff * 2, self.max_backoff)
            delivery.status = "failed"
            logger.warning(
                "webhook %s (%s) to %s failed after %d attempts: %s",
                delivery.id,
                delivery.description,
                delivery.url,
                delivery.attempts,
                delivery.last_error or delivery.last_status_code,
            )
        except asyncio.CancelledError:
            delivery.status = "cancelled"
            raise

    def _http_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    def deliveries(self) -> list[dict[str, Any]]:
        return [asdict(d) for d in self._deliveries]

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._deliveries.clear()

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


# ---------------------------------------------------------------- the state


class SandboxState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ledger = Ledger()
        self.faults = FaultRules()
        self.clock = SandboxClock(pace=settings.sandbox_clock_pace)
        self.hooks = HooksRecorder()
        self.webhooks = WebhookSender()
        self._stores: dict[type[Any], Any] = {}

    def store(self, kind: type[T]) -> T:
        """The provider store of class ``kind`` (created with ``kind()`` on first use).

        A provider module keeps its objects in its own store class, e.g.
        ``state.store(StripeStore)``; :meth:`reset` drops every store.
        """
        existing = self._stores.get(kind)
        if existing is None:
            existing = self._stores[kind] = kind()
        return existing

    def reset(self) -> None:
        self.webhooks.cancel_all()
        self.ledger = Ledger()
        self.faults.clear()
        self.hooks.clear()
        self.clock.reset()
        self._stores.clear()

    async def aclose(self) -> None:
        await self.webhooks.aclose()


def get_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


StateDep = Annotated[SandboxState, Depends(get_state)]
