"""The Cloudflare side of the deployment activities (``activities/cloudflare.py``): an SDK
client with Cloudflare's answers sorted into final and retryable failures, and the operations
on the buyer's account that take more than one call.

Each operation is idempotent on its own: it finds what an earlier attempt made before it
creates anything (a namespace, a D1 database, an R2 bucket, a DNS record, a secret), SQL runs
once per statement (tracked in the database itself), and an upload replaces the script. The
names come from the caller; nothing here knows about deployments, the vault or PostgreSQL.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import cloudflare
from temporalio.exceptions import ApplicationError

from fulfil.messages.deployment import DnsSpec, Resource, WorkerSpec

CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"
CLOUDFLARE_REFUSED = "CloudflareRefused"
# Refusals no retry can fix.
FINAL = (
    cloudflare.AuthenticationError,
    cloudflare.PermissionDeniedError,
    cloudflare.BadRequestError,
    cloudflare.UnprocessableEntityError,
    cloudflare.NotFoundError,
    cloudflare.ConflictError,
)


@contextlib.asynccontextmanager
async def cloudflare_client(token: str, base_url: str) -> AsyncIterator[Any]:
    """A client for one activity call. A refusal (``FINAL``) leaves as a non-retryable
    ``CloudflareRefused``; other status errors and dropped connections as retryable errors.
    No message carries the token."""
    client = cloudflare.AsyncCloudflare(
        api_token=token, base_url=base_url, max_retries=0, timeout=30.0
    )
    try:
        yield client
    except FINAL as err:
        raise ApplicationError(
            f"Cloudflare refused: {err.status_code} {_errors(err)}",
            type=CLOUDFLARE_REFUSED,
            non_retryable=True,
        ) from None
    except cloudflare.APIStatusError as err:
        raise RuntimeError(f"Cloudflare answered {err.status_code}: {_errors(err)}") from None
    except cloudflare.APIConnectionError:
        raise RuntimeError("Cloudflare did not answer") from None
    finally:
        await client.close()


def _errors(err: cloudflare.APIStatusError) -> str:
    body = err.body if isinstance(err.body, dict) else {}
    errors = body.get("errors") or []
    return "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))[:300]


# --- create if absent -----------------------------------------------------------------------


async def ensure_namespace(cf: Any, account_id: str, name: str) -> None:
    """The Workers for Platforms dispatch namespace ``name``, created unless it exists."""
    namespaces = cf.workers_for_platforms.dispatch.namespaces
    existing = [n async for n in namespaces.list(account_id=account_id)]
    if not any(getattr(n, "namespace_name", None) == name for n in existing):
        await namespaces.create(account_id=account_id, name=name)


async def upload_script(
    cf: Any,
    account_id: str,
    namespace: str,
    script: str,
    worker: WorkerSpec,
    bindings: list[dict[str, Any]],
) -> None:
    """The worker's modules as ``script`` in the namespace, with ``bindings`` (secrets kept)."""
    files = [
        (
            name,
            source.encode(),
            "application/javascript+module" if name.endswith(("js", "mjs")) else "text/plain",
        )
        for name, source in worker.modules.items()
    ]
    await cf.workers_for_platforms.dispatch.namespaces.scripts.update(
        script,
        account_id=account_id,
        dispatch_namespace=namespace,
        metadata={
            "main_module": worker.main_module,
            "compatibility_date": worker.compatibility_date,
            "bindings": bindings,
            "keep_bindings": ["secret_text"],
        },
        files=files,
    )


async def add_missing_secrets(
    cf: Any, account_id: str, namespace: str, script: str, names: list[str]
) -> None:
    """Each secret of ``names`` the script lacks, with a value generated here and returned to
    nobody; a secret that exists is kept."""
    scripts = cf.workers_for_platforms.dispatch.namespaces.scripts
    present = {
        s.name
        async for s in scripts.secrets.list(
            script, account_id=account_id, dispatch_namespace=namespace
        )
    }
    for name in names:
        if name not in present:
            await scripts.secrets.update(
                script,
                account_id=account_id,
                dispatch_namespace=namespace,
                name=name,
                text=secrets.token_urlsafe(32),
                type="secret_text",
            )


async def ensure_d1(cf: Any, account_id: str, name: str) -> str:
    """The uuid of the D1 database ``name``, created unless it exists."""
    uuid = await _find_d1(cf, account_id, name)
    if uuid is None:
        database = await cf.d1.database.create(account_id=account_id, name=name)
        uuid = database.uuid
    return str(uuid)


async def _find_d1(cf: Any, account_id: str, name: str) -> str | None:
    async for database in cf.d1.database.list(account_id=account_id, name=name):
        if getattr(database, "name", None) == name:
            return str(database.uuid)
    return None


async def apply_once(
    cf: Any, account_id: str, uuid: str, statements: list[str], first_id: int
) -> None:
    """Run each statement once: recorded in the database's own ``_fulfil_migrations`` table,
    in the same batch (all or nothing), so a retry skips what ran."""
    if not statements:
        return
    await cf.d1.database.query(
        uuid,
        account_id=account_id,
        sql="CREATE TABLE IF NOT EXISTS _fulfil_migrations (id INTEGER PRIMARY KEY)",
    )
    for offset, sql in enumerate(statements):
        ident = first_id + offset
        seen = await cf.d1.database.query(
            uuid,
            account_id=account_id,
            sql="SELECT id FROM _fulfil_migrations WHERE id = ?",
            params=[str(ident)],
        )
        rows = [r for page in _found(seen) for r in (getattr(page, "results", None) or [])]
        if rows:
            continue
        await cf.d1.database.query(
            uuid,
            account_id=account_id,
            batch=[
                {"sql": sql},
                {"sql": "INSERT INTO _fulfil_migrations (id) VALUES (?)", "params": [str(ident)]},
            ],
        )


def _found(items: Any) -> list[Any]:
    return list(getattr(items, "result", None) or items or [])


async def ensure_r2_bucket(cf: Any, account_id: str, name: str, cors_origins: list[str]) -> None:
    """The R2 bucket ``name``, created unless it exists, allowing GET and HEAD from
    ``cors_origins`` when there are any."""
    try:
        await cf.r2.buckets.get(name, account_id=account_id)
    except cloudflare.NotFoundError:
        await cf.r2.buckets.create(account_id=account_id, name=name)
    if cors_origins:
        await cf.r2.buckets.cors.update(
            name,
            account_id=account_id,
            rules=[
                {
                    "allowed": {
                        "origins": cors_origins,
                        "methods": ["GET", "HEAD"],
                    },
                    "max_age_seconds": 3600,
                }
            ],
        )


async def ensure_dns_record(cf: Any, zone_id: str, spec: DnsSpec) -> Any:
    """The zone's record with the spec's type, name and content, created unless it exists."""
    found = [
        r
        async for r in cf.dns.records.list(
            zone_id=zone_id, name={"exact": spec.name}, type=spec.type
        )
        if getattr(r, "content", None) == spec.content
    ]
    if found:
        return found[0]
    return await cf.dns.records.create(
        zone_id=zone_id,
        type=spec.type,
        name=spec.name,
        content=spec.content,
        proxied=spec.proxied,
        ttl=1,
    )


# --- rollback ---------------------------------------------------------------------------------


async def remove_resource(cf: Any, account_id: str, r: Resource) -> None:
    """Delete one resource a step made (a cron is emptied); one already gone counts as
    deleted."""
    with contextlib.suppress(cloudflare.NotFoundError):
        await _remove(cf, account_id, r)


async def _remove(cf: Any, account_id: str, r: Resource) -> None:
    if r.type == "namespace":
        await cf.workers_for_platforms.dispatch.namespaces.delete(r.name, account_id=account_id)
    elif r.type == "script":
        await cf.workers_for_platforms.dispatch.namespaces.scripts.delete(
            r.name, account_id=account_id, dispatch_namespace=r.parent, force=True
        )
    elif r.type == "d1_database":
        await cf.d1.database.delete(r.id, account_id=account_id)
    elif r.type == "r2_bucket":
        await cf.r2.buckets.delete(r.name, account_id=account_id)
    elif r.type == "custom_domain":
        await cf.workers.domains.delete(r.id, account_id=account_id)
    elif r.type == "dns_record":
        await cf.dns.records.delete(r.id, zone_id=r.parent)
    elif r.type == "cron":
        await cf.workers.scripts.schedules.update(r.name, account_id=account_id, body=[])
