"""Request and response models of the Cloudflare package deployment (``api/routes/deploy.py``).
The buyer's token is a ``SecretStr``: never echoed, logged or stored."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr

from api.schemas import ApiRequest
from fulfil.messages.deployment import PackageManifest
from fulfil.views import UtcDatetime


class CloudflareCredentials(ApiRequest):
    account_id: str = Field(pattern=r"^[A-Za-z0-9]{1,64}$")
    api_token: SecretStr = Field(
        min_length=1,
        max_length=512,
        description="Kept encrypted in the vault for the deployment only; never echoed, "
        "logged, stored in PostgreSQL or put in a workflow payload",
    )
    zone_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,64}$")


Hostname = Annotated[
    str,
    Field(
        max_length=253,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        examples=["shop.candles.example.com"],
    ),
]


class DeployRequest(ApiRequest):
    package: PackageManifest
    cloudflare: CloudflareCredentials
    hostname: Hostname | None = None


class DeployAccepted(BaseModel):
    deploymentId: str


class TokenSupply(ApiRequest):
    api_token: SecretStr = Field(min_length=1, max_length=512)


class DeployStepPublic(BaseModel):
    name: str
    status: str
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    detail: str = ""


class DeploymentPublic(BaseModel):
    deploymentId: str
    status: str
    steps: list[DeployStepPublic]
    resources: dict[str, list[dict[str, Any]]] = Field(
        description="What the deployment created, by type (``deleted`` once rolled back)"
    )
    failed_step: str | None = None
    detail: str = ""
    package: dict[str, str]
    created_at: UtcDatetime
