"""What ops read in the logs: one JSON line per request with its request id, every line of a
request carrying that id, and an unexpected error logged once (with its traceback) and
answered as problem+json, served by uvicorn as in production."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from devstack.harness import serve_in_thread
from fulfil.ids import business_ids
from fulfil.logs import JsonFormatter
from fulfil.settings import Settings

PROBLEM_JSON = "application/problem+json"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter("api"))
        self.records: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(json.loads(self.format(record)))

    def wait_for(self, found: Callable[[dict[str, object]], bool]) -> dict[str, object]:
        """The access line is written after the response is sent, from the server's thread."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for record in list(self.records):
                if found(record):
                    return record
            time.sleep(0.01)
        raise AssertionError(f"no such line in {[rec['msg'] for rec in self.records]}")


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.fixture(scope="module")
def failing_app(api_settings: Settings) -> FastAPI:
    app = create_app(api_settings)
    quiet = logging.getLogger("tests.quiet")

    async def boom() -> None:
        quiet.info("about to fail")
        raise RuntimeError("the database said no")

    app.add_api_route("/boom", boom)
    return app


@pytest.fixture(scope="module")
def served(failing_app: FastAPI) -> Iterator[str]:
    with serve_in_thread(failing_app) as url:
        yield url


def test_an_unexpected_error_is_logged_once_and_answered_as_a_problem(
    served: str, lines: Lines
) -> None:
    r = httpx.get(f"{served}/boom", headers={"X-Request-Id": "rq-from-the-caller"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["title"]
    assert "the database said no" not in r.text  # the cause is for the logs, not the caller
    assert r.headers["x-request-id"] == "rq-from-the-caller"
    lines.wait_for(lambda rec: rec["msg"] == "GET /boom 500")
    with_traceback = [rec for rec in lines.records if "exc" in rec]
    assert len(with_traceback) == 1, [rec["msg"] for rec in lines.records]
    [line] = with_traceback
    assert line["msg"] == "GET /boom 500"
    assert line["level"] == "error"
    assert "the database said no" in str(line["exc"])
    assert line["request_id"] == "rq-from-the-caller"
    errors = [rec for rec in lines.records if rec["level"] == "error"]
    assert errors == [line]
    # The line the route logged before failing carries the same request id.
    [before] = [rec for rec in lines.records if rec["msg"] == "about to fail"]
    assert before["request_id"] == "rq-from-the-caller"


def test_every_request_gets_an_id(served: str, lines: Lines) -> None:
    r = httpx.get(f"{served}/livez", headers={"X-Request-Id": "not a token \xe9".encode("latin-1")})
    given = r.headers["x-request-id"]
    assert given.startswith("req_")  # a bad one is replaced, not echoed
    line = lines.wait_for(lambda rec: rec["msg"] == "GET /livez 200")
    assert line["request_id"] == given
    other = httpx.get(f"{served}/livez").headers["x-request-id"]
    assert other != given


@pytest.mark.parametrize(
    ("workflow_id", "ids"),
    [
        ("order-ord_1", {"order_id": "ord_1"}),
        ("shipment-ord_1", {"order_id": "ord_1"}),
        ("payout-pay_9", {"payout_id": "pay_9"}),
        ("deploy-dep_3", {"deployment_id": "dep_3"}),
        ("tiktok-7000-5771", {"tiktok_shop_id": "7000", "tiktok_order_id": "5771"}),
        ("payout-release-run-2026-11-30T12:00:00Z", {}),
        ("something-else", {}),
    ],
)
def test_a_workflow_id_names_its_business_id(workflow_id: str, ids: dict[str, str]) -> None:
    assert business_ids(workflow_id) == ids
    record = logging.LogRecord("w", logging.INFO, "", 0, "step", None, None)
    record.temporal_workflow = {"workflow_id": workflow_id, "run_id": "r1"}
    line = json.loads(JsonFormatter("worker").format(record))
    assert line["run_id"] == "r1"
    for key, value in ids.items():
        assert line[key] == value
