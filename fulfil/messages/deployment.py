"""PackageDeployment's messages: the package manifest (validated at the edge), the nine steps,
their records, and the token vault's handle (the token itself never enters a payload).

Workflow id ``deploy-{deploymentId}``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fulfil.enums import DeploymentStatus, DeploymentStep, StepStatus

NAME = r"^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$|^[a-z0-9]$"
Name = Annotated[str, Field(pattern=NAME, description="lower case letters, digits, hyphens")]
Binding = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]
MAX_MODULE_BYTES = 256 * 1024
# Keys as JSON Schema states them (patternProperties, nothing else) and pydantic checks them.
ModuleName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}\.(m?js|wasm|json|txt)$")]
ModuleSource = Annotated[str, Field(max_length=MAX_MODULE_BYTES, pattern=r"^[^\x00]*$")]
VarName = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]
ONLY_PATTERN_KEYS: dict[str, Any] = {"additionalProperties": False}
CRON = re.compile(r"^(\S+\s+){4}\S+$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerSpec(StrictModel):
    name: Name
    main_module: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}\.(m?js)$")
    modules: dict[ModuleName, ModuleSource] = Field(
        min_length=1, max_length=20, json_schema_extra=ONLY_PATTERN_KEYS
    )
    compatibility_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")

    @field_validator("modules")
    @classmethod
    def _modules(cls, modules: dict[str, str]) -> dict[str, str]:
        for name, source in modules.items():
            if len(source.encode()) > MAX_MODULE_BYTES:
                raise ValueError(f"module {name!r} is over {MAX_MODULE_BYTES} bytes")
        return modules

    @model_validator(mode="after")
    def _main_is_a_module(self) -> WorkerSpec:
        if self.main_module not in self.modules:
            raise ValueError(f"main_module {self.main_module!r} is not one of the modules")
        return self


class D1Spec(StrictModel):
    name: Name
    binding: Binding
    migrations: list[Annotated[str, Field(min_length=1, max_length=100_000)]] = Field(
        default_factory=list, max_length=50
    )


class R2Spec(StrictModel):
    name: Name
    binding: Binding
    cors_origins: list[Annotated[str, Field(pattern=r"^https?://[^\s/]+$", max_length=253)]] = (
        Field(default_factory=list, max_length=20)
    )


class DnsSpec(StrictModel):
    type: Literal["A", "AAAA", "CNAME", "TXT"]
    name: str = Field(pattern=r"^(@|[a-z0-9*]([a-z0-9.-]{0,61}[a-z0-9])?)$")
    content: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00\s]+$")
    proxied: bool = False


class D1SqlStep(StrictModel):
    kind: Literal["d1_sql"]
    database: Name
    sql: str = Field(min_length=1, max_length=100_000)


class CronStep(StrictModel):
    kind: Literal["cron"]
    worker: Name
    schedule: str = Field(max_length=100)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not CRON.fullmatch(value.strip()):
            raise ValueError("a cron schedule has five fields, e.g. '0 3 * * *'")
        return value.strip()


class HttpCheckStep(StrictModel):
    kind: Literal["http_check"]
    path: str = Field(default="/", pattern=r"^/[^\s\x00]{0,255}$")
    expect_status: int = Field(default=200, ge=100, le=599)


PostDeployStep = Annotated[D1SqlStep | CronStep | HttpCheckStep, Field(discriminator="kind")]


class CloudflareSpec(StrictModel):
    workers: list[WorkerSpec] = Field(min_length=1, max_length=10)
    d1_databases: list[D1Spec] = Field(default_factory=list, max_length=10)
    r2_buckets: list[R2Spec] = Field(default_factory=list, max_length=10)
    dns_records: list[DnsSpec] = Field(default_factory=list, max_length=20)
    vars: dict[VarName, Annotated[str, Field(max_length=5_000)]] = Field(
        default_factory=dict, max_length=50, json_schema_extra=ONLY_PATTERN_KEYS
    )
    secrets: list[Binding] = Field(default_factory=list, max_length=20)
    post_deploy: list[PostDeployStep] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _references(self) -> CloudflareSpec:
        workers = {w.name for w in self.workers}
        databases = {d.name for d in self.d1_databases}
        for what in (self.workers, self.d1_databases, self.r2_buckets):
            names = [item.name for item in what]
            if len(names) != len(set(names)):
                raise ValueError("names must be unique within workers, d1_databases, r2_buckets")
        bindings = [d.binding for d in self.d1_databases] + [b.binding for b in self.r2_buckets]
        bindings += list(self.vars) + list(self.secrets)
        if len(bindings) != len(set(bindings)):
            raise ValueError("binding, var and secret names must all be different")
        for step in self.post_deploy:
            if isinstance(step, D1SqlStep) and step.database not in databases:
                raise ValueError(f"post_deploy names an unknown database {step.database!r}")
            if isinstance(step, CronStep) and step.worker not in workers:
                raise ValueError(f"post_deploy names an unknown worker {step.worker!r}")
        return self


class PackageManifest(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00]+$")
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,20}$")
    version: str = Field(pattern=r"^[0-9A-Za-z.+-]{1,32}$")
    cloudflare: CloudflareSpec


class DeploymentConfig(BaseModel):
    # How long a step may keep failing transiently before the deployment rolls back.
    step_give_up_seconds: int = 600
    # How long the run waits for a re-supplied token when the vault's copy expired.
    token_wait_seconds: int = 900
    # A step that has not heartbeated for this long is retried (its worker died).
    step_heartbeat_seconds: int = 8
    # Where the post-deploy http check reaches the hostname (the sandbox in dev).
    check_base: str | None = None


class PackageDeploymentInput(BaseModel):
    deployment_id: str
    merchant_id: str
    account_id: str
    zone_id: str | None = None
    hostname: str | None = None
    package: PackageManifest
    # The token is in the vault (Redis, encrypted, with a TTL): only its handle travels.
    token_handle: str
    config: DeploymentConfig = Field(default_factory=DeploymentConfig)


class Resource(BaseModel):
    """Something the deployment created in the buyer's account (deleted on rollback)."""

    type: str  # namespace | script | d1_database | r2_bucket | r2_cors | custom_domain | ...
    name: str
    id: str
    step: DeploymentStep
    parent: str | None = None  # the namespace of a script, the zone of a record ...


class StepRequest(BaseModel):
    deployment_id: str
    step: DeploymentStep
    inp: PackageDeploymentInput
    # Created by earlier steps: ids are reused on retry ("create if absent").
    resources: list[Resource] = Field(default_factory=list)


class StepResult(BaseModel):
    step: DeploymentStep
    created: list[Resource] = Field(default_factory=list)
    detail: str = ""


class DeleteResource(BaseModel):
    deployment_id: str
    account_id: str
    token_handle: str
    resource: Resource


class StepRecord(BaseModel):
    deployment_id: str
    step: DeploymentStep
    status: StepStatus
    detail: str = ""
    resources: list[Resource] = Field(default_factory=list)


class DeploymentRecord(BaseModel):
    deployment_id: str
    status: DeploymentStatus
    detail: str = ""
    failed_step: DeploymentStep | None = None
    # Deleted by the rollback (marked ``deleted`` in the read model).
    removed: list[Resource] = Field(default_factory=list)


class TokenHandle(BaseModel):
    deployment_id: str
    token_handle: str


class TokenResupplied(BaseModel):
    """Signal: the buyer gave a new token (it is in the vault under this handle)."""

    token_handle: str


class DeploymentView(BaseModel):
    deployment_id: str
    status: DeploymentStatus
    steps: list[dict[str, Any]]
    resources: list[Resource]
    failed_step: DeploymentStep | None = None
    detail: str = ""
    waiting_for_token: bool = False
