"""RFC 9457 problem details: the body of every error answer.

Raise :class:`Problem` (or one of the helpers) anywhere in a request; the
handlers installed by :func:`install_problem_handlers` also turn FastAPI's
validation errors, unknown routes, wrong methods and unexpected exceptions
into ``application/problem+json`` (the last without any internals).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import psycopg
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import FieldError, ProblemDetails

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://fulfil.example/problems/"
_LOCATIONS = ("body", "query", "path", "header", "cookie")


class Problem(Exception):
    """An error answer. ``slug`` names the problem type (``about:blank`` without one)."""

    def __init__(
        self,
        status: HTTPStatus,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or status.phrase
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> ProblemDetails:
        return ProblemDetails(
            type=f"{PROBLEM_TYPE_BASE}{self.slug}" if self.slug else "about:blank",
            title=self.title,
            status=self.status.value,
            detail=self.detail,
            errors=self.errors,
            **self.extra,
        )

    def response(self) -> JSONResponse:
        return problem_response(self.body(), headers=self.headers)


def problem_response(
    body: ProblemDetails, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        jsonable_encoder(body, exclude_none=True),
        status_code=body.status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


# --- the problems the API raises --------------------------------------------


def unauthorized(detail: str = "Missing or invalid API key.") -> Problem:
    return Problem(
        HTTPStatus.UNAUTHORIZED, detail, slug="unauthorized", headers={"WWW-Authenticate": "Bearer"}
    )


def forbidden(detail: str) -> Problem:
    return Problem(HTTPStatus.FORBIDDEN, detail, slug="forbidden")


def not_found(what: str) -> Problem:
    return Problem(HTTPStatus.NOT_FOUND, f"{what} not found.", slug="not-found")


def unknown_cursor(what: str, starting_after: str) -> Problem:
    """A list's ``starting_after`` that names no ``what`` of the caller's."""
    return Problem(
        HTTPStatus.NOT_FOUND,
        f"starting_after: no {what} {starting_after!r} to page after.",
        slug="not-found",
        errors=[FieldError(field="starting_after", message=f"unknown {what}")],
    )


def conflict(slug: str, detail: str, errors: Sequence[FieldError] | None = None) -> Problem:
    return Problem(HTTPStatus.CONFLICT, detail, slug=slug, errors=errors)


def invalid(errors: Sequence[FieldError], detail: str = "The request is not valid.") -> Problem:
    return Problem(HTTPStatus.UNPROCESSABLE_ENTITY, detail, slug="validation-error", errors=errors)


def malformed_event(detail: str) -> Problem:
    """A webhook that verified but cannot be read: 400, which providers treat as final."""
    return Problem(HTTPStatus.BAD_REQUEST, detail, slug="malformed-event")


def invalid_field(field: str, message: str) -> Problem:
    return invalid([FieldError(field=field, message=message)], detail=f"{field}: {message}")


# --- FastAPI's own errors ----------------------------------------------------


def field_name(loc: Sequence[str | int]) -> str:
    """``("body", "items", 0, "quantity")`` → ``items[0].quantity``."""
    parts = list(loc)
    where = str(parts.pop(0)) if parts and parts[0] in _LOCATIONS else ""
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or where or "body"


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            out.append(FieldError(field="body", message="The body is not valid JSON."))
            continue
        message = str(err.get("msg", "Invalid value."))
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        out.append(FieldError(field=field_name(loc), message=message))
    return out


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.response()


# Headers a request must carry, whose absence CONTRACT.md answers with 400 (not 422).
REQUIRED_HEADERS = {"Idempotency-Key": "idempotency-key"}


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if len(loc) == 2 and loc[0] == "header" and loc[1] in REQUIRED_HEADERS:
            missing = err.get("type") == "missing"
            return Problem(
                HTTPStatus.BAD_REQUEST,
                f"The {loc[1]} header is required."
                if missing
                else f"The {loc[1]} header must be 1 to 255 printable ASCII characters.",
                slug=f"{REQUIRED_HEADERS[str(loc[1])]}-{'missing' if missing else 'invalid'}",
            ).response()
    errors = _field_errors(exc)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:3])
    return invalid(errors, detail=detail or "The request is not valid.").response()


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = HTTPStatus(exc.status_code)
    if status == HTTPStatus.NOT_FOUND:
        detail = f"No resource at {request.url.path}."
    elif status == HTTPStatus.METHOD_NOT_ALLOWED:
        detail = f"{request.method} is not allowed on {request.url.path}."
    else:
        detail = exc.detail if isinstance(exc.detail, str) else status.phrase
    headers = dict(exc.headers or {})
    if status == HTTPStatus.METHOD_NOT_ALLOWED:
        # Every method of the path, not only those of the first route that matched it.
        allowed = allowed_methods(request.app.openapi(), request.url.path)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return Problem(status, detail, headers=headers).response()


def allowed_methods(document: dict[str, Any], path: str) -> list[str]:
    """The methods the OpenAPI document lists for the template ``path`` matches."""
    for template, operations in document.get("paths", {}).items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return sorted(method.upper() for method in operations)
    return []


# What an outage of a dependency raises: the request may succeed if sent again shortly.
_DATABASE_DOWN: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,  # refused, reset, timed out; deadlock, serialization
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection in time
    psycopg.OperationalError,
)
_REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
RETRY_AFTER_SECONDS = 5


def unavailable(exc: BaseException) -> Problem | None:
    """503 with ``Retry-After`` when ``exc`` is a dependency not answering (PostgreSQL, Redis,
    the request's deadline), else None. Nothing was committed: the transaction of the request
    is rolled back, so the client can send the same request again."""
    if isinstance(exc, _DATABASE_DOWN):
        what = "The database"
    elif isinstance(exc, _REDIS_DOWN):
        what = "Redis"
    elif isinstance(exc, TimeoutError):
        what = "A service the API depends on"
    else:
        return None
    return Problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        f"{what} did not answer; nothing was changed. Try again shortly.",
        slug="unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Outermost safety net (``RequestObservability`` answers and logs unhandled errors
    first): Starlette re-raises after this, and uvicorn logs it."""
    return Problem(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "An unexpected error occurred. It has been logged.",
        slug="internal-error",
    ).response()


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_responses(*statuses: HTTPStatus) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these error statuses (see ``api.app._openapi``)."""
    return {
        status.value: {
            "model": ProblemDetails,
            "description": status.phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }
