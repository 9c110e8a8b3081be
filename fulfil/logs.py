"""Structured (JSON lines) logging for every process.

Extra fields given to a log call (``log.info("...", extra={"order_id": ...})``)
become top-level keys. Temporal's workflow and activity loggers attach
``temporal_workflow`` / ``temporal_activity`` dicts, flattened to
``workflow_id``, ``run_id``, ``activity_type`` and so on; any other line logged
inside an activity gets the same from the activity's context, and every line
with a ``workflow_id`` gets the business id it names (``order_id``,
``payout_id``, ``deployment_id``, ``tiktok_order_id``). Fields bound with
:func:`bound` (the API binds ``request_id`` per request) go on every line. Secrets never get
here: callers log ids, never tokens, card data or request bodies, and the
engines hide statement parameters. PostgreSQL's own error details ("Failing row
contains (...)", "Key (email)=(...)") quote row values, so they are redacted
from every message and traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from fulfil.ids import business_ids

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()) | {
    "message",
    "asctime",
    "taskName",
}


# PostgreSQL quotes row values in its error details.
_ROW_VALUES = re.compile(r"(Failing row contains |Key \([^)]*\)=)\((?:[^()]|\([^()]*\))*\)")
_DETAIL_LINE = re.compile(r"^(\s*DETAIL:).*$", re.MULTILINE)


def redact(text: str) -> str:
    """``text`` without the row values a database error may quote."""
    return _DETAIL_LINE.sub(r"\1 <redacted>", _ROW_VALUES.sub(r"\1(<redacted>)", text))


# Fields every log line of the current request (or task) carries, e.g. ``request_id``.
_context: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "log_context", default=()
)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Within this block (and tasks started in it), every log line carries ``fields``."""
    token = _context.set(tuple({**dict(_context.get()), **fields}.items()))
    try:
        yield
    finally:
        _context.reset(token)


def _activity_fields() -> dict[str, Any]:
    """The running activity's run, for lines logged inside it by any logger."""
    if not activity.in_activity():
        return {}
    info = activity.info()
    return {
        "workflow_id": info.workflow_id,
        "run_id": info.workflow_run_id,
        "workflow_type": info.workflow_type,
        "activity_type": info.activity_type,
        "attempt": info.attempt,
    }


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key in ("temporal_workflow", "temporal_activity") and isinstance(value, dict):
                for inner, inner_value in value.items():
                    out.setdefault(inner, inner_value)
                continue
            out[key] = value
        for key, value in {**dict(_context.get()), **_activity_fields()}.items():
            out.setdefault(key, value)
        workflow_id = out.get("workflow_id")
        if isinstance(workflow_id, str):
            # The business id the run is about (order, payout, deployment), for search.
            for key, value in business_ids(workflow_id).items():
                out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "stripe", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
