"""Schemathesis against ``/openapi.json``: every operation, positive and negative data, as a
merchant (owner key) and as ops, with every check. The app runs in this process (uvicorn in a
thread) on the API tests' own PostgreSQL database; Temporal is unreachable, so starts stay in
the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import assume
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from devstack.harness import serve_in_thread
from fulfil.settings import Settings
from tests.api.conftest import SHIP_FROM

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def served_api(api_settings: Settings) -> Iterator[str]:
    settings = api_settings.model_copy(
        update={"rate_limit_per_minute": 1_000_000, "anonymous_rate_limit": 1_000_000}
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def merchant_key(served_api: str, api_settings: Settings) -> str:
    ops = {"Authorization": f"Bearer {api_settings.ops_api_key}"}
    with httpx.Client(base_url=served_api) as http:
        r = http.post(
            "/api/v1/merchants",
            json={
                "name": "Fuzz",
                "email": f"fuzz-{uuid.uuid4().hex[:6]}@example.com",
                "ship_from": SHIP_FROM,
            },
            headers=ops,
        )
        assert r.status_code == 201, r.text
        key = str(r.json()["api_key"])
        for sku in ("MUG-1", "TEE-1"):
            http.post(
                "/api/v1/products",
                json={"sku": sku, "name": sku, "price": 1000, "currency": "USD", "stock": 10**6},
                headers={"Authorization": f"Bearer {key}"},
            )
    return key


def load_schema() -> Any:
    """The document the app serves at /openapi.json (building it needs no running app)."""
    config = SchemathesisConfig()
    config.projects.default.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES_PER_OPERATION,
        deterministic=True,
        database="none",
    )
    document = create_app(Settings(env="test")).openapi()
    # /readyz answers 503 when a dependency is down, which is its job (Temporal is, here).
    return schemathesis.openapi.from_dict(document, config=config).exclude(path="/readyz")


# Valid against the merchant's catalogue, which no schema can state: CONTRACT.md answers an
# unknown sku, discount or a mixed currency with 422 naming the field.
# The deploy manifest refers to itself (main_module is one of the modules, names are unique,
# bindings, vars and secrets differ, post_deploy names a declared database or worker): 422
# naming the field, which JSON Schema cannot state. tests/api/test_deploy.py covers each.
CATALOGUE_BOUND = {("POST", "/api/v1/orders"), ("POST", "/api/deploy")}


# They call Stripe or Temporal while answering, and say 502/503 (documented) when it is
# unreachable: here neither runs.
PROVIDER_BOUND = {
    ("POST", "/api/seller/create-account"),
    ("POST", "/api/v1/ops/payout-runs"),
    ("GET", "/api/v1/ops/reconciliation"),
}


def excluded(case: Any) -> list[Any]:
    operation = (case.method.upper(), case.path)
    if operation in CATALOGUE_BOUND:
        return [positive_data_acceptance]
    if operation in PROVIDER_BOUND:
        return [not_a_server_error]
    return []


def semantic_only(case: Any) -> None:
    """Two rules JSON Schema cannot state, each tested on its own elsewhere: integers are
    written without a fraction (``1000.0`` and ``1e3`` are refused), and a webhook URL must
    not lead to a private address (``test_webhook_urls.py``). Schema-valid data that breaks
    them is not "valid data rejected"."""
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    body = case.body if isinstance(case.body, dict) else {}
    assume(not _integral_floats(body))
    assume("webhook_url" not in body)


def _integral_floats(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_integral_floats(v) for v in value.values())
    if isinstance(value, list):
        return any(_integral_floats(v) for v in value)
    return False


schema = load_schema()


@schema.parametrize()
def test_as_a_merchant_the_api_answers_as_its_schema_says(
    case: Any, served_api: str, merchant_key: str
) -> None:
    semantic_only(case)
    case.call_and_validate(
        base_url=served_api,
        headers={"Authorization": f"Bearer {merchant_key}"},
        excluded_checks=excluded(case),
    )


@schema.parametrize()
def test_as_ops_the_api_answers_as_its_schema_says(
    case: Any, served_api: str, api_settings: Settings
) -> None:
    semantic_only(case)
    case.call_and_validate(
        base_url=served_api,
        headers={"Authorization": f"Bearer {api_settings.ops_api_key}"},
        excluded_checks=excluded(case),
    )
