"""PackageDeployment: a business package deployed into the buyer's Cloudflare account in nine
steps, rolled back when one cannot succeed.

    verify_token → create_namespace → deploy_workers → create_d1 → create_r2 →
    configure_domain → create_dns_records → set_environment → run_post_deploy

Each step is an idempotent activity (names from the deployment id, "create if absent"),
retried while Cloudflare fails transiently (up to ``step_give_up_seconds``). A refusal no
retry can fix (a token without permission, an invalid request) deletes what was created, in
reverse, and ends ``rolled_back`` with the step and the reason. The token is never in this
workflow: only its vault handle. When the vault's copy has expired, the run waits
``token_wait_seconds`` for a new one (``POST /api/deploy/{id}/token``), then rolls back (with
the new token if one comes; without any, it ends ``failed`` listing what is left). The last
step always deletes the token from the vault. Workflow id: ``deploy-{deploymentId}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.cloudflare import TOKEN_MISSING, CloudflareActivities
    from fulfil.enums import DeploymentStatus, DeploymentStep, StepStatus
    from fulfil.messages.deployment import (
        DeleteResource,
        DeploymentRecord,
        DeploymentView,
        PackageDeploymentInput,
        Resource,
        StepRecord,
        StepRequest,
        StepResult,
        TokenHandle,
        TokenResupplied,
    )
    from workflows import policies

STEP_TIMEOUT = timedelta(minutes=2)
# A delete Cloudflare refuses no longer ends the rollback: the rest are still tried, so the buyer's
# account keeps only what could not be removed (runs before it stopped at the first refusal).
ROLLBACK_TRIES_EVERY_DELETE = "rollback-tries-every-delete"
WAITING_FOR_TOKEN = "waiting for a new token: POST /api/deploy/{id}/token"
STEPS = {
    DeploymentStep.VERIFY_TOKEN: CloudflareActivities.verify_token,
    DeploymentStep.CREATE_NAMESPACE: CloudflareActivities.create_namespace,
    DeploymentStep.DEPLOY_WORKERS: CloudflareActivities.deploy_workers,
    DeploymentStep.CREATE_D1: CloudflareActivities.create_d1,
    DeploymentStep.CREATE_R2: CloudflareActivities.create_r2,
    DeploymentStep.CONFIGURE_DOMAIN: CloudflareActivities.configure_domain,
    DeploymentStep.CREATE_DNS_RECORDS: CloudflareActivities.create_dns_records,
    DeploymentStep.SET_ENVIRONMENT: CloudflareActivities.set_environment,
    DeploymentStep.RUN_POST_DEPLOY: CloudflareActivities.run_post_deploy,
}


class StepFailed(Exception):
    def __init__(self, step: DeploymentStep, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


class NoToken(Exception):
    """The vault has no token and none came within the wait."""


def _reason(err: ActivityError) -> str:
    cause: BaseException | None = err.cause
    while isinstance(cause, FailureError) and not isinstance(cause, ApplicationError):
        if cause.cause is None:
            break
        cause = cause.cause
    return str(cause.message if isinstance(cause, ApplicationError) else cause or err)


def _token_missing(err: ActivityError) -> bool:
    return isinstance(err.cause, ApplicationError) and err.cause.type == TOKEN_MISSING


@workflow.defn
class PackageDeployment:
    def __init__(self) -> None:
        self._inp: PackageDeploymentInput | None = None
        self._status = DeploymentStatus.PENDING
        self._steps: dict[DeploymentStep, dict[str, Any]] = {
            step: {"name": step.value, "status": StepStatus.PENDING.value, "detail": ""}
            for step in DeploymentStep
        }
        self._created: list[Resource] = []
        self._handle = ""
        self._new_handle: str | None = None
        self._failed_step: DeploymentStep | None = None
        self._detail = ""
        self._waiting_for_token = False

    @workflow.run
    async def run(self, inp: PackageDeploymentInput) -> DeploymentView:
        self._inp, self._handle = inp, inp.token_handle
        self._status = DeploymentStatus.RUNNING
        try:
            for step in DeploymentStep:
                await self._run_step(step)
        except StepFailed as failed:
            await self._roll_back(failed)
        else:
            self._status = DeploymentStatus.SUCCEEDED
            self._detail = f"{len(self._created)} resources in account {inp.account_id}"
            await self._record_deployment()
        finally:
            await self._forget_token()
        return self.progress()

    async def _run_step(self, step: DeploymentStep) -> None:
        inp = self._input()
        self._mark(step, StepStatus.RUNNING)
        while True:
            request = StepRequest(
                deployment_id=inp.deployment_id,
                step=step,
                inp=inp.model_copy(update={"token_handle": self._handle}),
                resources=list(self._created),
            )
            try:
                result: StepResult = await workflow.execute_activity_method(
                    STEPS[step],
                    request,
                    start_to_close_timeout=STEP_TIMEOUT,
                    heartbeat_timeout=timedelta(seconds=inp.config.step_heartbeat_seconds),
                    schedule_to_close_timeout=timedelta(seconds=inp.config.step_give_up_seconds),
                    retry_policy=policies.PROVIDER_RETRY,
                    summary=f"step {list(DeploymentStep).index(step) + 1}/9: {step.value}",
                )
            except ActivityError as err:
                if _token_missing(err):
                    try:
                        await self._await_token(step)
                    except NoToken:
                        raise StepFailed(step, "the Cloudflare token expired") from None
                    continue
                raise StepFailed(step, _reason(err)) from None
            self._created += [r for r in result.created if r not in self._created]
            status = (
                StepStatus.SKIPPED if result.detail.startswith("skipped") else StepStatus.SUCCEEDED
            )
            self._mark(step, status, result.detail)
            return

    async def _await_token(self, step: DeploymentStep) -> None:
        """The vault's copy expired: wait (bounded) for the buyer to supply a new one."""
        inp = self._input()
        wait = timedelta(seconds=inp.config.token_wait_seconds)
        self._waiting_for_token = True
        self._set_details(f"waiting up to {wait} for a new token (POST /api/deploy/{{id}}/token)")
        workflow.logger.warning(
            "deployment waits for a new token",
            extra={"deployment_id": inp.deployment_id, "step": step.value},
        )
        # The buyer reads progress from the API: the step says what it waits for.
        await self._record_step(step, StepStatus.RUNNING, WAITING_FOR_TOKEN, "waiting for a token")
        try:
            await workflow.wait_condition(
                lambda: self._new_handle is not None, timeout=wait, timeout_summary="token wait"
            )
        except TimeoutError:
            raise NoToken from None
        finally:
            self._waiting_for_token = False
        assert self._new_handle is not None
        self._handle, self._new_handle = self._new_handle, None

    async def _roll_back(self, failed: StepFailed) -> None:
        inp = self._input()
        self._failed_step, self._detail = failed.step, failed.reason
        self._mark(failed.step, StepStatus.FAILED, failed.reason)
        await self._record_step(
            failed.step, StepStatus.FAILED, failed.reason, f"{failed.step.value} failed"
        )
        removed: list[Resource] = []
        refused: list[str] = []
        for resource in reversed(self._created):
            self._set_details(f"rolling back: deleting {resource.type} {resource.name}")
            while True:
                try:
                    await workflow.execute_activity_method(
                        CloudflareActivities.delete_resource,
                        DeleteResource(
                            deployment_id=inp.deployment_id,
                            account_id=inp.account_id,
                            token_handle=self._handle,
                            resource=resource,
                        ),
                        start_to_close_timeout=STEP_TIMEOUT,
                        schedule_to_close_timeout=timedelta(
                            seconds=inp.config.step_give_up_seconds
                        ),
                        retry_policy=policies.PROVIDER_RETRY,
                        summary=f"delete {resource.type} {resource.name}",
                    )
                except ActivityError as err:
                    if _token_missing(err):
                        try:
                            await self._await_token(failed.step)
                        except NoToken:
                            return await self._leave_behind(removed, "no token to roll back with")
                        continue
                    if not workflow.patched(ROLLBACK_TRIES_EVERY_DELETE):
                        return await self._leave_behind(removed, f"rollback failed: {_reason(err)}")
                    refused.append(f"{resource.type} {resource.name}: {_reason(err)}")
                    break
                removed.append(resource)
                break
        if refused:
            return await self._leave_behind(removed, f"rollback failed: {'; '.join(refused)}")
        self._status = DeploymentStatus.ROLLED_BACK
        self._created = []
        await self._record_deployment(removed)

    async def _record_step(
        self, step: DeploymentStep, status: StepStatus, detail: str, summary: str
    ) -> None:
        await workflow.execute_activity_method(
            CloudflareActivities.record_step,
            StepRecord(
                deployment_id=self._input().deployment_id,
                step=step,
                status=status,
                detail=detail,
            ),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
            summary=summary,
        )

    async def _leave_behind(self, removed: list[Resource], why: str) -> None:
        """Rolling back could not finish: ``failed``, with what is left in the account."""
        self._created = [r for r in self._created if r not in removed]
        self._status = DeploymentStatus.FAILED
        left = ", ".join(f"{r.type} {r.name}" for r in self._created)
        self._detail = f"{self._detail}; {why}; left in the account: {left}"
        await self._record_deployment(removed)

    async def _record_deployment(self, removed: list[Resource] | None = None) -> None:
        inp = self._input()
        self._set_details(self._detail)
        await workflow.execute_activity_method(
            CloudflareActivities.record_deployment,
            DeploymentRecord(
                deployment_id=inp.deployment_id,
                status=self._status,
                detail=self._detail,
                failed_step=self._failed_step,
                removed=removed or [],
            ),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
            summary=f"deployment {self._status.value}",
        )

    async def _forget_token(self) -> None:
        inp = self._input()
        # In a fixed order (a set's order would differ between runs: not deterministic).
        for handle in dict.fromkeys([inp.token_handle, self._handle, self._new_handle]):
            if handle:
                await workflow.execute_activity_method(
                    CloudflareActivities.forget_token,
                    TokenHandle(deployment_id=inp.deployment_id, token_handle=handle),
                    start_to_close_timeout=policies.DB_TIMEOUT,
                    retry_policy=policies.DB_RETRY,
                    summary="delete the token from the vault",
                )

    def _mark(self, step: DeploymentStep, status: StepStatus, detail: str = "") -> None:
        now = workflow.now().isoformat().replace("+00:00", "Z")
        entry = self._steps[step]
        if status == StepStatus.RUNNING:
            entry.setdefault("started_at", now)
        else:
            entry["finished_at"] = now
            entry.setdefault("started_at", now)
        entry["status"], entry["detail"] = status.value, detail
        number = list(DeploymentStep).index(step) + 1
        self._set_details(f"step {number}/9 {step.value}: {status.value}")

    def _set_details(self, text: str) -> None:
        workflow.set_current_details(f"**{self._status.value}** · {text}")

    def _input(self) -> PackageDeploymentInput:
        assert self._inp is not None
        return self._inp

    @workflow.signal
    def token_resupplied(self, event: TokenResupplied) -> None:
        """The buyer put a new token in the vault; the run goes on with it."""
        self._new_handle = event.token_handle

    @workflow.query
    def progress(self) -> DeploymentView:
        inp = self._inp
        return DeploymentView(
            deployment_id=inp.deployment_id if inp else "",
            status=self._status,
            steps=[dict(entry) for entry in self._steps.values()],
            resources=list(self._created),
            failed_step=self._failed_step,
            detail=self._detail,
            waiting_for_token=self._waiting_for_token,
        )
