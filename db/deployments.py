"""Deployment repository: the deployment's row, its per-step progress and its resources.

Steps are a JSON list in step order; each record replaces its step's entry (a retry
writes the same thing again). Resources are appended once each (by type and id).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment
from fulfil.enums import DeploymentStatus, DeploymentStep, StepStatus


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def create_deployment(
    session: AsyncSession,
    *,
    deployment_id: str,
    merchant_id: str,
    package_id: str,
    package_name: str,
    package_version: str,
    account_id: str,
    zone_id: str | None,
    hostname: str | None,
) -> Deployment:
    deployment = Deployment(
        id=deployment_id,
        merchant_id=merchant_id,
        package_id=package_id,
        package_name=package_name,
        package_version=package_version,
        account_id=account_id,
        zone_id=zone_id,
        hostname=hostname,
        status=DeploymentStatus.PENDING.value,
        steps=[
            {
                "name": step.value,
                "status": StepStatus.PENDING.value,
                "started_at": None,
                "finished_at": None,
                "detail": "",
            }
            for step in DeploymentStep
        ],
        resources=[],
    )
    session.add(deployment)
    await session.flush()
    return deployment


async def get_deployment(
    session: AsyncSession, deployment_id: str, merchant_id: str | None = None, *, lock: bool = False
) -> Deployment | None:
    query = select(Deployment).where(Deployment.id == deployment_id)
    if merchant_id is not None:
        query = query.where(Deployment.merchant_id == merchant_id)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query.execution_options(populate_existing=True))


async def record_step(
    session: AsyncSession,
    deployment: Deployment,
    step: DeploymentStep,
    status: StepStatus,
    detail: str,
    resources: list[dict[str, Any]],
) -> None:
    steps = [dict(s) for s in deployment.steps]
    for entry in steps:
        if entry["name"] != step.value:
            continue
        if status == StepStatus.RUNNING and entry["status"] != StepStatus.RUNNING.value:
            entry["started_at"] = entry["started_at"] or _now()
        if status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED):
            entry["finished_at"] = _now()
            entry["started_at"] = entry["started_at"] or entry["finished_at"]
        entry["status"] = status.value
        entry["detail"] = detail[:1000]
    deployment.steps = steps
    known = {(r["type"], r["id"]) for r in deployment.resources}
    deployment.resources = [
        *deployment.resources,
        *(r for r in resources if (r["type"], r["id"]) not in known),
    ]
    if deployment.status == DeploymentStatus.PENDING.value:
        deployment.status = DeploymentStatus.RUNNING.value
    await session.flush()


async def record_status(
    session: AsyncSession,
    deployment: Deployment,
    status: DeploymentStatus,
    detail: str,
    failed_step: DeploymentStep | None,
    removed: list[tuple[str, str]] | None = None,
) -> None:
    deployment.status = status.value
    deployment.detail = detail[:2000]
    if failed_step is not None:
        deployment.failed_step = failed_step.value
    if removed:
        gone = set(removed)
        deployment.resources = [
            {**r, "deleted": True} if (r["type"], r["id"]) in gone else r
            for r in deployment.resources
        ]
    if status == DeploymentStatus.ROLLED_BACK:
        deployment.steps = [
            {**s, "status": StepStatus.ROLLED_BACK.value}
            if s["status"] == StepStatus.SUCCEEDED.value
            else s
            for s in deployment.steps
        ]
    await session.flush()
