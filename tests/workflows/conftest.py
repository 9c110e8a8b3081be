from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.temporal_env import find_test_server, keyed_converter
from tests.workflows.fakes import WORKFLOW_CACHE


@pytest.fixture(params=[True, False], ids=["cached", "no-cache"])
async def ts_env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of the test's own: timers of days pass in milliseconds.

    One per test: a run left in flight by one test must not hold another's clock. Each test
    runs twice: with the workers' sticky cache, and with ``max_cached_workflows=0``.
    """
    WORKFLOW_CACHE["on"] = request.param
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_test_server(),
        data_converter=keyed_converter(),
        # A loaded 2-core machine can take longer than the default 5 s to start it.
        test_server_startup_timeout=timedelta(seconds=60),
    )
    try:
        yield env
    finally:
        await env.shutdown()
        WORKFLOW_CACHE["on"] = True
