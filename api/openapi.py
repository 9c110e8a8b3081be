"""The OpenAPI document, made to tell the truth about what the front door and the
error handlers answer, not only what the routes return.

- Every error answer is ``application/problem+json`` (``ProblemDetails``), FastAPI's
  own 422 included.
- Every operation under ``/api/`` may answer 401 (no or a bad key) and 429 (the
  key's or the client's rate limit, with ``Retry-After``); every operation with
  a body may answer 400 and 413 (over the size limit).
- Webhooks answer 400, 401 and 413, never 429.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.gate import is_webhook
from api.problems import PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before the next request",
        "schema": {"type": "integer"},
    }
}


def _problem(status: HTTPStatus, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": status.phrase,
        "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def _document_errors(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for response in responses.values():
        content = response.get("content", {})
        if PROBLEM_JSON in content and "application/json" in content:
            content.pop("application/json")
    if "422" in responses:
        responses["422"] = _problem(HTTPStatus.UNPROCESSABLE_ENTITY)
    has_body = "requestBody" in operation
    extra: list[tuple[HTTPStatus, dict[str, Any] | None]] = []
    if has_body or is_webhook(path):
        extra += [(HTTPStatus.BAD_REQUEST, None), (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, None)]
    if path.startswith("/api/") and not is_webhook(path):
        extra += [(HTTPStatus.UNAUTHORIZED, None), (HTTPStatus.TOO_MANY_REQUESTS, RETRY_AFTER)]
    if path.startswith(("/docs", "/redoc", "/openapi")):
        extra.append((HTTPStatus.TOO_MANY_REQUESTS, RETRY_AFTER))
    for status, headers in extra:
        responses.setdefault(str(status.value), _problem(status, headers))


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _document_errors(path, method, operation)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
