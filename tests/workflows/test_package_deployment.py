"""PackageDeployment on the time-skipping server, Cloudflare and the vault in memory: the nine
steps in order, a refusal rolled back in reverse, transient failures retried, a token that
expires and is re-supplied (or is not, and the run gives up), a rollback that cannot finish.

With ``RECORD_HISTORIES=1`` each test keeps its history under ``tests/histories/``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from fulfil.enums import DeploymentStatus, DeploymentStep
from fulfil.messages.deployment import (
    DeploymentConfig,
    DeploymentView,
    PackageDeploymentInput,
    PackageManifest,
    TokenResupplied,
)
from tests.workflows.fakes import HISTORIES, MADE_BY, Fakes
from tests.workflows.waiting import until
from workflows.package_deployment import PackageDeployment

SAMPLE = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "package-candle-shop.json").read_text()
)
STEPS = [s.value for s in DeploymentStep]


def deployment_input(deployment_id: str, **config: Any) -> PackageDeploymentInput:
    return PackageDeploymentInput(
        deployment_id=deployment_id,
        merchant_id="mer_buyer",
        account_id="acc_buyer",
        zone_id="zone_buyer",
        hostname="shop.candles.example.com",
        package=PackageManifest.model_validate(SAMPLE),
        token_handle="handle-first",
        config=DeploymentConfig(**{"token_wait_seconds": 900, **config}),
    )


class Run:
    def __init__(self, env: WorkflowEnvironment, fakes: Fakes) -> None:
        self.env, self.fakes = env, fakes
        self.task_queue = f"deploy-{uuid.uuid4().hex[:8]}"
        self.deployment_id = f"dep_{uuid.uuid4().hex[:12]}"
        self.handle: WorkflowHandle[Any, Any] | None = None

    async def start(self, **config: Any) -> WorkflowHandle[Any, Any]:
        self.handle = await self.env.client.start_workflow(
            PackageDeployment.run,
            deployment_input(self.deployment_id, **config),
            id=f"deploy-{self.deployment_id}",
            task_queue=self.task_queue,
        )
        return self.handle

    async def record(self, name: str) -> None:
        if not os.environ.get("RECORD_HISTORIES") or self.handle is None:
            return
        folder = HISTORIES / "package_deployment"
        folder.mkdir(parents=True, exist_ok=True)
        history = await self.handle.fetch_history()
        (folder / f"{name}.json").write_text(history.to_json())


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def run(ts_env: WorkflowEnvironment, fakes: Fakes) -> Run:
    return Run(ts_env, fakes)


async def result_of(handle: WorkflowHandle[Any, Any]) -> DeploymentView:
    view = await handle.result()
    assert isinstance(view, DeploymentView)
    return view


async def test_nine_steps_in_order(run: Run, fakes: Fakes) -> None:
    async with fakes.workers(run.env.client, run.task_queue, [PackageDeployment]):
        view = await result_of(await run.start())
    assert view.status == DeploymentStatus.SUCCEEDED
    assert fakes.calls == STEPS
    assert [s["status"] for s in view.steps] == ["succeeded"] * 9
    assert all(s["started_at"] and s["finished_at"] for s in view.steps)
    assert sorted(r.type for r in view.resources) == sorted(MADE_BY.values())
    assert fakes.statuses == ["succeeded"]
    assert fakes.cloudflare.forgotten == ["handle-first"]  # the last thing it does
    assert not fakes.cloudflare.deleted
    await run.record("succeeded")


@pytest.mark.parametrize("step", list(DeploymentStep), ids=STEPS)
async def test_a_refusal_rolls_back_in_reverse(
    run: Run, fakes: Fakes, step: DeploymentStep
) -> None:
    fakes.cloudflare.refuse[step] = "the token lacks Workers Scripts:Edit"
    async with fakes.workers(run.env.client, run.task_queue, [PackageDeployment]):
        view = await result_of(await run.start())
    assert view.status == DeploymentStatus.ROLLED_BACK
    assert view.failed_step == step
    assert "lacks Workers Scripts:Edit" in view.detail
    index = STEPS.index(step.value)
    made_before = [MADE_BY[s] for s in list(DeploymentStep)[:index] if s in MADE_BY]
    assert fakes.cloudflare.deleted == list(reversed(made_before))
    assert fakes.cloudflare.account == {}  # nothing of it is left
    assert fakes.calls[: index + 1] == STEPS[: index + 1]  # no step after the refused one
    assert [s["status"] for s in view.steps][index] == "failed"
    assert f"{step.value}:failed" in fakes.cloudflare.records
    assert fakes.statuses == ["rolled_back"]
    assert fakes.cloudflare.forgotten == ["handle-first"]
    assert view.resources == []
    if step == DeploymentStep.CREATE_DNS_RECORDS:
        await run.record("rolled_back")


async def test_transient_failures_are_retried(run: Run, fakes: Fakes) -> None:
    fakes.cloudflare.transient = {DeploymentStep.CREATE_D1: 3, DeploymentStep.CREATE_R2: 1}
    async with fakes.workers(run.env.client, run.task_queue, [PackageDeployment]):
        view = await result_of(await run.start())
    assert view.status == DeploymentStatus.SUCCEEDED
    assert fakes.calls.count("create_d1") == 4
    assert fakes.calls.count("create_r2") == 2
    # Each resource once, although its step ran several times.
    assert sorted(r.type for r in view.resources) == sorted(MADE_BY.values())
    await run.record("transient_retried")


async def test_a_step_failing_past_its_deadline_rolls_back(run: Run, fakes: Fakes) -> None:
    fakes.cloudflare.transient = {DeploymentStep.CONFIGURE_DOMAIN: 10_000}
    async with fakes.workers(run.env.client, run.task_queue, [PackageDeployment]):
        view = await result_of(await run.start(step_give_up_seconds=120))
    assert view.status == DeploymentStatus.ROLLED_BACK
    assert view.failed_step == DeploymentStep.CONFIGURE_DOMAIN
    assert fakes.cloudflare.account == {}


async def test_an_expired_token_waits_and_goes_on_with_the_new_one(run: Run, fakes: Fakes) -> None:
    fakes.cloudflare.expired = {"handle-first"}
    async with fakes.workers(run.env.client, run.task_queue, [PackageDeployment]):
        handle = await run.start()

        async def waiting() -> bool:
            view: DeploymentView = await handle.query(PackageDeployment.progress)
            return view.waiting_for_token

        await until(waiting, "waiting")
        assert "verify_token:running" in fakes.cloudflare.records  # the API says it waits
        await handle.signal(
            PackageDeployment.token_resupplied, TokenResupplied(token_handle="handle-second")
        )
        view = await result_of(handle)
    assert view.status == DeploymentStatus.SUCCEEDED
    assert set(fakes.cloudflare.handles_used) == {"handle-second"}
    # Both handles are deleted from the vault at the end, the expired one too.
    assert fakes.cloudflare.forgotten == ["handle-first", "handle-second"]
    await run.record("token_resupplied")


async def test_no_new_token_in_time_ends_failed_listing_what_is_left(
    run: Run, fakes: Fakes
) -> None:
    """The token expires after the third step and nobody supplies another within the wait:
    the step fails, and the rollback (which needs a token too) waits again, then gives up. The
    run ends failed and lists what is left in the account."""
    fakes.cloudflare.expire_after_steps = 3
    async with fakes.workers(run.env.client, run.task_queue, [PackageDeployment]):
        view = await result_of(await run.start(token_wait_seconds=600))
    assert view.status == DeploymentStatus.FAILED
    assert view.failed_step == DeploymentStep.CREATE_D1
    assert "the Cloudflare token expired" in view.detail
    assert "no token to roll back with" in view.detail
    assert "left in the account: namespace namespace-dep_" in view.detail
    assert {r.type for r in view.resources} == {"namespace", "script"}
    assert fakes.cloudflare.deleted == []
    assert fakes.statuses == ["failed"]
    assert fakes.cloudflare.forgotten == ["handle-first"]
    await run.record("token_never_came")


async def test_a_token_supplied_during_the_rollback_is_used_to_roll_back(
    run: Run, fakes: Fakes
) -> None:
    """R2 is refused and the token has expired by then: the rollback waits for a token, gets
    one, and deletes everything with it."""
    fakes.cloudflare.refuse = {DeploymentStep.CREATE_R2: "R2 is not enabled on this account"}
    fakes.cloudflare.expire_after_steps = 4
    async with fakes.workers(run.env.client, run.task_queue, [PackageDeployment]):
        handle = await run.start()

        async def waiting() -> bool:
            view: DeploymentView = await handle.query(PackageDeployment.progress)
            return view.waiting_for_token

        await until(waiting, "waiting")
        await handle.signal(
            PackageDeployment.token_resupplied, TokenResupplied(token_handle="handle-second")
        )
        view = await result_of(handle)
    assert view.status == DeploymentStatus.ROLLED_BACK
    assert view.failed_step == DeploymentStep.CREATE_R2
    assert fakes.cloudflare.deleted == ["d1_database", "script", "namespace"]
    assert fakes.cloudflare.account == {}
    assert fakes.cloudflare.forgotten == ["handle-first", "handle-second"]
    await run.record("token_during_rollback")


async def test_a_rollback_that_cannot_finish_is_failed_and_says_what_is_left(
    run: Run, fakes: Fakes
) -> None:
    fakes.cloudflare.refuse = {DeploymentStep.SET_ENVIRONMENT: "secrets refused"}
    fakes.cloudflare.delete_refused = {"d1_database"}
    async with fakes.workers(run.env.client, run.task_queue, [PackageDeployment]):
        view = await result_of(await run.start())
    assert view.status == DeploymentStatus.FAILED
    # Every delete is tried, in reverse; only the one Cloudflare refused is left, and said.
    assert fakes.cloudflare.deleted == [
        "dns_record",
        "custom_domain",
        "r2_bucket",
        "script",
        "namespace",
    ]
    assert [r.type for r in view.resources] == ["d1_database"]
    assert "rollback failed: d1_database " in view.detail
    assert "Cloudflare refused: 403" in view.detail
    assert view.detail.endswith(f"left in the account: d1_database {view.resources[0].name}")
    assert list(fakes.cloudflare.account) == [view.resources[0].name]
    assert fakes.statuses == ["failed"]
    await run.record("rollback_incomplete")
