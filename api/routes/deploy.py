"""Cloudflare package deployments: one request deploys a package into the buyer's account.

The buyer's API token goes into the vault (Redis, AES-GCM, a TTL) and the workflow starts
with its handle only: the token is never echoed, logged, written to PostgreSQL or put in a
workflow payload. Progress is read from PostgreSQL (each step writes it as it goes).
"""

from __future__ import annotations

import hashlib
import json
import logging
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.deploy_schemas import (
    DeployAccepted,
    DeploymentPublic,
    DeployRequest,
    DeployStepPublic,
    TokenSupply,
)
from api.deps import (
    CurrentCaller,
    DispatchDep,
    OptionalIdempotencyKey,
    OwnerMerchant,
    ResourcesDep,
    SessionDep,
)
from api.problems import Problem, conflict, not_found, problem_responses
from api.schemas import FieldError
from db import deployments, inbox, orders, outbox
from db.models import Deployment, OutboxMessage
from fulfil.enums import DeploymentStatus
from fulfil.ids import deploy_workflow_id, new_id
from fulfil.messages.deployment import PackageDeploymentInput, TokenResupplied
from fulfil.settings import Settings
from fulfil.temporal import DEPLOYMENT_ID, MERCHANT_ID
from workflows.names import signal_name, workflow_name
from workflows.package_deployment import PackageDeployment

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/deploy",
    tags=["deployments"],
    responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
)

DeploymentIdPath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
ENDED = frozenset(
    {
        DeploymentStatus.SUCCEEDED.value,
        DeploymentStatus.ROLLED_BACK.value,
        DeploymentStatus.FAILED.value,
    }
)


@router.post(
    "",
    status_code=HTTPStatus.ACCEPTED,
    summary="Deploy a package into the buyer's Cloudflare account (owner)",
    description="Validates the manifest (422 naming the field), keeps the token in the vault "
    "for the run, and starts the nine steps. Read the progress with "
    "`GET /api/deploy?deploymentId=`. With an `Idempotency-Key`, a retry with the same body "
    "(the token aside) answers with the same deployment; with a different body, 422.",
    responses=problem_responses(
        HTTPStatus.BAD_REQUEST, HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY
    ),
)
async def deploy(
    body: DeployRequest,
    merchant: OwnerMerchant,
    idempotency_key: OptionalIdempotencyKey,
    session: SessionDep,
    resources: ResourcesDep,
    dispatch: DispatchDep,
) -> DeployAccepted:
    deployment_id = new_id("dep")
    if idempotency_key is not None:
        # A client that retries after a timeout must not deploy the package twice into the
        # buyer's account (every resource is named after the deployment id).
        digest = request_hash(body)
        if not await orders.claim_idempotency_key(
            session,
            merchant_id=merchant.id,
            key=idempotency_key,
            request_hash=digest,
            resource_id=deployment_id,
        ):
            return await _replayed(session, merchant.id, idempotency_key, digest)
    settings = resources.settings
    handle = await resources.vault.put(
        deployment_id,
        body.cloudflare.api_token.get_secret_value(),
        settings.deploy_token_ttl_seconds,
    )
    await deployments.create_deployment(
        session,
        deployment_id=deployment_id,
        merchant_id=merchant.id,
        package_id=body.package.id,
        package_name=body.package.name,
        package_version=body.package.version,
        account_id=body.cloudflare.account_id,
        zone_id=body.cloudflare.zone_id,
        hostname=body.hostname,
    )
    outbox_id = await inbox.add_outbox_message(
        session, start_deployment(settings, merchant.id, body, deployment_id, handle)
    )
    await session.commit()
    await dispatch.schedule([outbox_id])
    log.info(
        "deployment accepted",
        extra={
            "deployment_id": deployment_id,
            "merchant_id": merchant.id,
            "package": body.package.id,
        },
    )
    return DeployAccepted(deploymentId=deployment_id)


def request_hash(body: DeployRequest) -> str:
    """What a retry must repeat: everything but the token (a retry may carry a fresh one, and
    no digest of a secret is kept)."""
    fields = body.model_dump(mode="json")
    fields["cloudflare"].pop("api_token", None)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _replayed(
    session: SessionDep, merchant_id: str, idempotency_key: str, digest: str
) -> DeployAccepted:
    record = await orders.get_idempotency_record(session, merchant_id, idempotency_key)
    if record is None:
        raise conflict(
            "idempotency-key-in-use",
            "Another request with this Idempotency-Key is in progress; retry.",
        )
    if record.request_hash != digest:
        raise Problem(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "This Idempotency-Key was used with a different request body.",
            slug="idempotency-key-reused",
            errors=[FieldError(field="Idempotency-Key", message="used with a different body")],
        )
    if await deployments.get_deployment(session, record.resource_id, merchant_id) is None:
        raise conflict("idempotency-key-in-use", "This Idempotency-Key belongs to another request.")
    return DeployAccepted(deploymentId=record.resource_id)


def start_deployment(
    settings: Settings,
    merchant_id: str,
    body: DeployRequest,
    deployment_id: str,
    handle: str,
) -> OutboxMessage:
    inp = PackageDeploymentInput(
        deployment_id=deployment_id,
        merchant_id=merchant_id,
        account_id=body.cloudflare.account_id,
        zone_id=body.cloudflare.zone_id,
        hostname=body.hostname,
        package=body.package,
        token_handle=handle,
        config=settings.deployment_config(),
    )
    return outbox.start_message(
        workflow_name(PackageDeployment.run),
        deploy_workflow_id(deployment_id),
        inp.model_dump(mode="json"),
        search_attributes={MERCHANT_ID.name: merchant_id, DEPLOYMENT_ID.name: deployment_id},
        summary=f"Deploy {body.package.name} {body.package.version} · account "
        f"{body.cloudflare.account_id}" + (f" · {body.hostname}" if body.hostname else ""),
        task_queue=settings.task_queue,
    )


@router.get(
    "",
    summary="A deployment's progress: status, the nine steps, what it created",
    responses=problem_responses(HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def get_deployment(
    caller: CurrentCaller,
    session: SessionDep,
    deployment_id: Annotated[
        str, Query(alias="deploymentId", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")
    ],
) -> DeploymentPublic:
    found = await deployments.get_deployment(session, deployment_id, caller.merchant_id)
    if found is None:
        raise not_found(f"Deployment {deployment_id!r}")
    return deployment_public(found)


def deployment_public(deployment: Deployment) -> DeploymentPublic:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for resource in deployment.resources:
        grouped.setdefault(str(resource["type"]), []).append(
            {k: v for k, v in resource.items() if k != "type"}
        )
    return DeploymentPublic(
        deploymentId=deployment.id,
        status=deployment.status,
        steps=[DeployStepPublic.model_validate(step) for step in deployment.steps],
        resources=grouped,
        failed_step=deployment.failed_step,
        detail=deployment.detail,
        package={
            "id": deployment.package_id,
            "name": deployment.package_name,
            "version": deployment.package_version,
        },
        created_at=deployment.created_at,
    )


@router.post(
    "/{deployment_id}/token",
    status_code=HTTPStatus.ACCEPTED,
    summary="Supply a new token to a deployment whose token expired (owner)",
    responses=problem_responses(
        HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY
    ),
)
async def supply_token(
    deployment_id: DeploymentIdPath,
    body: TokenSupply,
    merchant: OwnerMerchant,
    session: SessionDep,
    resources: ResourcesDep,
    dispatch: DispatchDep,
) -> DeployAccepted:
    found = await deployments.get_deployment(session, deployment_id, merchant.id)
    if found is None:
        raise not_found(f"Deployment {deployment_id!r}")
    if found.status in ENDED:
        raise conflict("deployment-ended", f"Deployment {deployment_id} is {found.status}.")
    handle = await resources.vault.put(
        deployment_id,
        body.api_token.get_secret_value(),
        resources.settings.deploy_token_ttl_seconds,
    )
    outbox_id = await inbox.add_outbox_message(
        session,
        outbox.signal_message(
            deploy_workflow_id(deployment_id),
            signal_name(PackageDeployment.token_resupplied),
            TokenResupplied(token_handle=handle).model_dump(mode="json"),
        ),
    )
    await session.commit()
    await dispatch.schedule([outbox_id])
    return DeployAccepted(deploymentId=deployment_id)
