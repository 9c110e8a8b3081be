"""The engine's HTTP API (and the sandbox's control endpoints) as the CLI calls them.

Every failure becomes one :class:`~ops.config.OpsError` line: a service that does not answer
says where it was looked for; an error answer says the request, the status and, for
``application/problem+json`` (RFC 9457), its title, detail and field errors. A 429 is retried
after its ``Retry-After`` (ops keys are not limited, merchant keys are).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from ops.config import OpsError

PROBLEM_JSON = "application/problem+json"
RATE_LIMIT_RETRIES = 3
MAX_RETRY_AFTER_SECONDS = 10.0
PAGE_SIZE = 100


class ApiError(OpsError):
    """The service answered with an error status."""

    def __init__(self, message: str, *, status: int, problem: Mapping[str, Any] | None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = dict(problem or {})


class Service:
    """One HTTP service (the API, the sandbox) with the key its calls carry by default."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=transport,
        )

    async def __aenter__(self) -> Service:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The decoded JSON body of a 2xx answer (``None`` when empty); raises otherwise."""
        sent = dict(headers or {})
        bearer = key or self._key
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, headers=sent
                )
            except httpx.TransportError as err:
                raise OpsError(
                    f"cannot reach {self.name} at {self.base_url} ({_reason(err)}); "
                    "is the engine running (`make run`)?"
                ) from err
            if response.status_code == 429 and attempt < RATE_LIMIT_RETRIES:
                await asyncio.sleep(_retry_after(response))
                continue
            break
        if response.is_success:
            return response.json() if response.content else None
        raise _error(method, path, response)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)

    async def pages(
        self, path: str, *, id_field: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every row of a ``{"data", "has_more"}`` list, page after page (``starting_after``)."""
        query: dict[str, str | int] = {**(params or {}), "limit": PAGE_SIZE}
        while True:
            page = await self.get(path, params=query)
            for row in page["data"]:
                yield row
            if not page["has_more"] or not page["data"]:
                return
            query["starting_after"] = page["data"][-1][id_field]


def _reason(err: httpx.TransportError) -> str:
    if isinstance(err, httpx.TimeoutException):
        return "timed out"
    return str(err) or type(err).__name__


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), MAX_RETRY_AFTER_SECONDS)


def _error(method: str, path: str, response: httpx.Response) -> ApiError:
    status = f"{response.status_code} {response.reason_phrase}".strip()
    problem: dict[str, Any] | None = None
    if response.headers.get("content-type", "").startswith(PROBLEM_JSON):
        try:
            problem = response.json()
        except ValueError:
            problem = None
    if problem is not None:
        title = str(problem.get("title") or response.reason_phrase)
        detail = str(problem.get("detail") or "")
        fields = "; ".join(
            f"{e.get('field')}: {e.get('message')}" for e in problem.get("errors") or []
        )
        shown_title = "" if title == response.reason_phrase else title
        said = ": ".join(part for part in (shown_title, detail) if part) or title
        if fields and fields not in said:
            said = f"{said} ({fields})"
    else:
        said = response.text.strip().replace("\n", " ")[:300] or response.reason_phrase
    return ApiError(
        f"{method} {path}: {status}: {said}", status=response.status_code, problem=problem
    )
