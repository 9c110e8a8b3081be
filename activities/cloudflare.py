"""Cloudflare activities: the nine steps of a package deployment, each idempotent, and the
deletes a rollback runs. Uses the official ``cloudflare`` SDK (async).

Every resource's name comes from the deployment id (``{slug}-{name}-{short id}``), each step
finds what an earlier attempt made before it creates anything ("create if absent"), and a
step writes its own progress and the ids it created to PostgreSQL, so a worker killed
mid-step is retried without making anything twice. The buyer's token is opened from the
vault for each call and never leaves this process: not in a result, a log, or an error.

Permission and validation refusals (401, 403, 400, 404, 409, 422) are final: the workflow
rolls back. Rate limits, 5xx and dropped connections are retried. The calls to Cloudflare
themselves (the client, create-if-absent, apply-once SQL, deletes) are in
``activities/cloudflare_api.py``; this module holds the activities: the vault, heartbeats,
each step's progress in PostgreSQL, and the resources and detail it reports.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cloudflare_api import (
    CLOUDFLARE_API,
    CLOUDFLARE_REFUSED,
    add_missing_secrets,
    apply_once,
    cloudflare_client,
    ensure_d1,
    ensure_dns_record,
    ensure_namespace,
    ensure_r2_bucket,
    remove_resource,
    upload_script,
)
from activities.heartbeat import heartbeating
from activities.vault import TokenMissing, TokenVault
from db import deployments
from fulfil.enums import DeploymentStep, StepStatus
from fulfil.messages.deployment import (
    CronStep,
    D1SqlStep,
    DeleteResource,
    DeploymentRecord,
    HttpCheckStep,
    PackageDeploymentInput,
    Resource,
    StepRecord,
    StepRequest,
    StepResult,
    TokenHandle,
)

log = logging.getLogger(__name__)

TOKEN_MISSING = "CloudflareTokenMissing"
POST_DEPLOY_BASE = 10_000  # post-deploy SQL is tracked after the migrations


def short_id(deployment_id: str) -> str:
    return deployment_id.rsplit("_", 1)[-1][-10:].lower()


def resource_name(inp: PackageDeploymentInput, *parts: str) -> str:
    """``{slug}-{part...}-{short id}``, at most 63 characters (R2's limit)."""
    suffix = short_id(inp.deployment_id)
    stem = "-".join([inp.package.slug, *parts])[: 62 - len(suffix)].rstrip("-")
    return f"{stem}-{suffix}"


class CloudflareActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: TokenVault,
        http: httpx.AsyncClient,
        *,
        api_base: str | None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._vault = vault
        self._http = http
        self._api_base = api_base or CLOUDFLARE_API

    # --- plumbing -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _cloudflare(self, deployment_id: str, handle: str) -> AsyncIterator[Any]:
        """A client with the buyer's token, opened from the vault for this call only."""
        try:
            token = await self._vault.get(deployment_id, handle)
        except TokenMissing:
            raise ApplicationError(
                "the buyer's Cloudflare token is no longer in the vault (expired): "
                "POST /api/deploy/{id}/token to go on",
                type=TOKEN_MISSING,
                non_retryable=True,
            ) from None
        async with cloudflare_client(token, self._api_base) as client:
            yield client

    async def _step(
        self,
        req: StepRequest,
        work: Callable[[Any], Awaitable[StepResult]],
    ) -> StepResult:
        await self._record(req.deployment_id, req.step, StepStatus.RUNNING, "", [])
        async with self._cloudflare(req.deployment_id, req.inp.token_handle) as cf, heartbeating():
            result = await work(cf)
        status = StepStatus.SKIPPED if result.detail.startswith("skipped") else StepStatus.SUCCEEDED
        await self._record(req.deployment_id, req.step, status, result.detail, result.created)
        log.info(
            "deployment step done",
            extra={
                "deployment_id": req.deployment_id,
                "step": req.step.value,
                "status": status.value,
            },
        )
        return result

    async def _record(
        self,
        deployment_id: str,
        step: DeploymentStep,
        status: StepStatus,
        detail: str,
        created: list[Resource],
    ) -> None:
        async with self._sessionmaker.begin() as session:
            row = await deployments.get_deployment(session, deployment_id, lock=True)
            if row is not None:
                await deployments.record_step(
                    session,
                    row,
                    step,
                    status,
                    detail,
                    [r.model_dump(mode="json") for r in created],
                )

    # --- the nine steps ----------------------------------------------------------------------

    @activity.defn
    async def verify_token(self, req: StepRequest) -> StepResult:
        async def work(cf: Any) -> StepResult:
            token = await cf.user.tokens.verify()
            if getattr(token, "status", "active") != "active":
                raise ApplicationError(
                    f"the token is {token.status}", type=CLOUDFLARE_REFUSED, non_retryable=True
                )
            return StepResult(step=req.step, detail="the token is active")

        return await self._step(req, work)

    @activity.defn
    async def create_namespace(self, req: StepRequest) -> StepResult:
        inp = req.inp
        name = resource_name(inp)

        async def work(cf: Any) -> StepResult:
            await ensure_namespace(cf, inp.account_id, name)
            resource = Resource(type="namespace", name=name, id=name, step=req.step)
            return StepResult(step=req.step, created=[resource], detail=f"namespace {name}")

        return await self._step(req, work)

    @activity.defn
    async def deploy_workers(self, req: StepRequest) -> StepResult:
        """Each worker's modules, with its plain variables (D1 and R2 do not exist yet: their
        bindings come with ``set_environment``)."""
        inp = req.inp

        async def work(cf: Any) -> StepResult:
            created = []
            for worker in inp.package.cloudflare.workers:
                script = resource_name(inp, worker.name)
                bindings = [
                    {"type": "plain_text", "name": k, "text": v}
                    for k, v in inp.package.cloudflare.vars.items()
                ]
                await upload_script(
                    cf, inp.account_id, resource_name(inp), script, worker, bindings
                )
                created.append(
                    Resource(
                        type="script",
                        name=script,
                        id=script,
                        step=req.step,
                        parent=resource_name(inp),
                    )
                )
            names = ", ".join(r.name for r in created)
            return StepResult(step=req.step, created=created, detail=f"uploaded {names}")

        return await self._step(req, work)

    @activity.defn
    async def create_d1(self, req: StepRequest) -> StepResult:
        """Each database, created once, with its migrations applied once each (a table of
        applied migrations, updated in the same batch as the migration)."""
        inp = req.inp

        async def work(cf: Any) -> StepResult:
            created = []
            for spec in inp.package.cloudflare.d1_databases:
                name = resource_name(inp, spec.name)
                uuid = await ensure_d1(cf, inp.account_id, name)
                created.append(Resource(type="d1_database", name=name, id=uuid, step=req.step))
                await apply_once(cf, inp.account_id, uuid, spec.migrations, 0)
            detail = ", ".join(r.name for r in created) or "skipped: no D1 databases"
            return StepResult(step=req.step, created=created, detail=detail)

        return await self._step(req, work)

    @activity.defn
    async def create_r2(self, req: StepRequest) -> StepResult:
        inp = req.inp

        async def work(cf: Any) -> StepResult:
            created = []
            for spec in inp.package.cloudflare.r2_buckets:
                name = resource_name(inp, spec.name)
                await ensure_r2_bucket(cf, inp.account_id, name, spec.cors_origins)
                created.append(Resource(type="r2_bucket", name=name, id=name, step=req.step))
            detail = ", ".join(r.name for r in created) or "skipped: no R2 buckets"
            return StepResult(step=req.step, created=created, detail=detail)

        return await self._step(req, work)

    @activity.defn
    async def configure_domain(self, req: StepRequest) -> StepResult:
        inp = req.inp

        async def work(cf: Any) -> StepResult:
            if not inp.hostname or not inp.zone_id:
                return StepResult(step=req.step, detail="skipped: no hostname and zone given")
            service = resource_name(inp, inp.package.cloudflare.workers[0].name)
            domain = await cf.workers.domains.update(
                account_id=inp.account_id,
                hostname=inp.hostname,
                service=service,
                zone_id=inp.zone_id,
                extra_body={"environment": "production"},
            )
            resource = Resource(
                type="custom_domain", name=inp.hostname, id=str(domain.id), step=req.step
            )
            return StepResult(
                step=req.step, created=[resource], detail=f"{inp.hostname} → {service}"
            )

        return await self._step(req, work)

    @activity.defn
    async def create_dns_records(self, req: StepRequest) -> StepResult:
        inp = req.inp

        async def work(cf: Any) -> StepResult:
            records = inp.package.cloudflare.dns_records
            if not records:
                return StepResult(step=req.step, detail="skipped: no DNS records")
            if not inp.zone_id:
                return StepResult(step=req.step, detail="skipped: no zone given")
            created = []
            for spec in records:
                record = await ensure_dns_record(cf, inp.zone_id, spec)
                created.append(
                    Resource(
                        type="dns_record",
                        name=f"{spec.type} {spec.name}",
                        id=str(record.id),
                        step=req.step,
                        parent=inp.zone_id,
                    )
                )
            return StepResult(
                step=req.step, created=created, detail=", ".join(r.name for r in created)
            )

        return await self._step(req, work)

    @activity.defn
    async def set_environment(self, req: StepRequest) -> StepResult:
        """Every binding (D1, R2, variables) on each worker, then its secrets: values the engine
        generates, set once (a secret that exists is kept), returned to nobody."""
        inp = req.inp
        spec = inp.package.cloudflare
        databases = {r.name: r.id for r in req.resources if r.type == "d1_database"}

        async def work(cf: Any) -> StepResult:
            bindings: list[dict[str, Any]] = [
                {"type": "plain_text", "name": k, "text": v} for k, v in spec.vars.items()
            ]
            bindings += [
                {"type": "d1", "name": d.binding, "id": databases[resource_name(inp, d.name)]}
                for d in spec.d1_databases
            ]
            bindings += [
                {"type": "r2_bucket", "name": b.binding, "bucket_name": resource_name(inp, b.name)}
                for b in spec.r2_buckets
            ]
            namespace = resource_name(inp)
            for worker in spec.workers:
                script = resource_name(inp, worker.name)
                await upload_script(cf, inp.account_id, namespace, script, worker, bindings)
                await add_missing_secrets(cf, inp.account_id, namespace, script, spec.secrets)
            detail = (
                f"{_count(len(bindings), 'binding')} and {_count(len(spec.secrets), 'secret')} "
                f"on {', '.join(resource_name(inp, w.name) for w in spec.workers)}"
            )
            return StepResult(step=req.step, detail=detail)

        return await self._step(req, work)

    @activity.defn
    async def run_post_deploy(self, req: StepRequest) -> StepResult:
        inp = req.inp
        databases = {r.name: r.id for r in req.resources if r.type == "d1_database"}

        async def work(cf: Any) -> StepResult:
            done: list[str] = []
            created = []
            for index, step in enumerate(inp.package.cloudflare.post_deploy):
                if isinstance(step, D1SqlStep):
                    uuid = databases[resource_name(inp, step.database)]
                    await apply_once(cf, inp.account_id, uuid, [step.sql], POST_DEPLOY_BASE + index)
                    done.append(f"sql on {step.database}")
                elif isinstance(step, CronStep):
                    script = resource_name(inp, step.worker)
                    await cf.workers.scripts.schedules.update(
                        script, account_id=inp.account_id, body=[{"cron": step.schedule}]
                    )
                    created.append(Resource(type="cron", name=script, id=script, step=req.step))
                    done.append(f"cron {step.schedule}")
                elif isinstance(step, HttpCheckStep):
                    done.append(await self._http_check(inp, step))
            return StepResult(
                step=req.step, created=created, detail="; ".join(done) or "skipped: nothing to do"
            )

        return await self._step(req, work)

    async def _http_check(self, inp: PackageDeploymentInput, step: HttpCheckStep) -> str:
        if not inp.hostname:
            return "http check skipped: no hostname"
        base = inp.config.check_base
        url = (
            f"{base.rstrip('/')}/{inp.hostname}{step.path}"
            if base
            else f"https://{inp.hostname}{step.path}"
        )
        response = await self._http.get(url, follow_redirects=False)
        if response.status_code != step.expect_status:
            raise RuntimeError(
                f"GET {inp.hostname}{step.path} answered {response.status_code}, "
                f"not {step.expect_status}"
            )
        return f"GET {inp.hostname}{step.path}: {response.status_code}"

    # --- rollback, records, the token ----------------------------------------------------

    @activity.defn
    async def delete_resource(self, req: DeleteResource) -> None:
        """Delete what a deployment made; something already gone counts as deleted."""
        r = req.resource
        async with self._cloudflare(req.deployment_id, req.token_handle) as cf:
            await remove_resource(cf, req.account_id, r)
        log.info(
            "deployment resource deleted",
            extra={"deployment_id": req.deployment_id, "type": r.type, "resource": r.name},
        )

    @activity.defn
    async def record_step(self, record: StepRecord) -> None:
        await self._record(
            record.deployment_id, record.step, record.status, record.detail, record.resources
        )

    @activity.defn
    async def record_deployment(self, record: DeploymentRecord) -> None:
        async with self._sessionmaker.begin() as session:
            row = await deployments.get_deployment(session, record.deployment_id, lock=True)
            if row is not None:
                await deployments.record_status(
                    session,
                    row,
                    record.status,
                    record.detail,
                    record.failed_step,
                    [(r.type, r.id) for r in record.removed],
                )
        log.info(
            "deployment ended" if record.status != "running" else "deployment running",
            extra={"deployment_id": record.deployment_id, "status": record.status.value},
        )

    @activity.defn
    async def forget_token(self, req: TokenHandle) -> None:
        """The deployment's last step: the vault's copy of the token is deleted."""
        await self._vault.delete(req.token_handle)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
