"""The Cloudflare stand-in, driven through the official async ``cloudflare`` SDK.

Every provider call goes through the SDK exactly as the engine makes it (so
paths, bodies, multipart uploads and the response envelope are proven
compatible); the control API (``/_sandbox/...``) is read with plain httpx.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import cloudflare
import httpx
import pytest
from cloudflare import AsyncCloudflare

from tests.sandbox.conftest import Sandbox, make_cloudflare_client

ACCOUNT = "0123456789abcdef0123456789abcdef"
OTHER_ACCOUNT = "fedcba9876543210fedcba9876543210"
ZONE = "9f1c2b3a4d5e6f708192a3b4c5d6e7f8"
NAMESPACE = "candle-shop"
SECRET_VALUE = "whsec_do-not-echo-7f3a9c"
INDEX_JS = (
    "export default { async fetch(req, env) { const { results } = await "
    "env.DB.prepare('SELECT name FROM items').all(); return Response.json(results) } }"
)
MIGRATION = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "price_cents INTEGER NOT NULL DEFAULT 0)"
)


# ------------------------------------------------------------------ helpers


def error_codes(exc: cloudflare.APIStatusError) -> list[int]:
    body = exc.body
    assert isinstance(body, dict)
    assert body["success"] is False
    assert body["result"] is None
    return [error["code"] for error in body["errors"]]


async def cloudflare_ledger(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await http.get("/_sandbox/ledger")
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["cloudflare_resources"]
    return entries


async def live(http: httpx.AsyncClient, resource_type: str) -> list[dict[str, Any]]:
    return [
        e for e in await cloudflare_ledger(http) if e["type"] == resource_type and not e["deleted"]
    ]


async def create_namespace(client: AsyncCloudflare, name: str = NAMESPACE) -> str:
    namespace = await client.workers_for_platforms.dispatch.namespaces.create(
        account_id=ACCOUNT, name=name
    )
    assert namespace is not None
    assert namespace.namespace_id is not None
    return namespace.namespace_id


async def upload_script(
    client: AsyncCloudflare,
    name: str = "storefront",
    *,
    namespace: str = NAMESPACE,
    bindings: Iterable[dict[str, Any]] = (),
    modules: dict[str, str] | None = None,
    keep_bindings: list[str] | None = None,
) -> Any:
    metadata: dict[str, Any] = {
        "main_module": "index.js",
        "compatibility_date": "2026-01-01",
        "bindings": list(bindings),
    }
    if keep_bindings is not None:
        metadata["keep_bindings"] = keep_bindings
    files = [
        (filename, source.encode(), "application/javascript+module")
        for filename, source in (modules or {"index.js": INDEX_JS}).items()
    ]
    return await client.workers_for_platforms.dispatch.namespaces.scripts.update(
        name,
        account_id=ACCOUNT,
        dispatch_namespace=namespace,
        metadata=metadata,  # type: ignore[arg-type]
        files=files,
    )


async def create_d1(client: AsyncCloudflare, name: str = "candle-shop-main") -> str:
    database = await client.d1.database.create(account_id=ACCOUNT, name=name)
    assert database.uuid is not None
    return database.uuid


async def query(
    client: AsyncCloudflare, database_id: str, sql: str, params: list[str] | None = None
) -> list[Any]:
    page = await client.d1.database.query(
        database_id,
        account_id=ACCOUNT,
        sql=sql,
        **({"params": params} if params is not None else {}),
    )
    return list(page.result)


async def deployed_shop(client: AsyncCloudflare) -> dict[str, str]:
    """A namespace, D1, R2 bucket and a script bound to both, with a secret: the usual deploy."""
    await create_namespace(client)
    database_id = await create_d1(client)
    await client.r2.buckets.create(account_id=ACCOUNT, name="candle-shop-images")
    await upload_script(
        client,
        bindings=[
            {"type": "plain_text", "name": "SHOP_NAME", "text": "Candle Shop"},
            {"type": "d1", "name": "DB", "id": database_id},
            {"type": "r2_bucket", "name": "IMAGES", "bucket_name": "candle-shop-images"},
        ],
    )
    return {"database_id": database_id}


# -------------------------------------------------------------------- tokens


async def test_verify_answers_the_token_as_active(cloudflare_client: AsyncCloudflare) -> None:
    user = await cloudflare_client.user.tokens.verify()
    account = await cloudflare_client.accounts.tokens.verify(account_id=ACCOUNT)

    assert user is not None
    assert account is not None
    assert user.status == account.status == "active"
    assert user.id == account.id
    assert len(user.id) == 32


async def test_invalid_token_fails_verify_and_every_call(sandbox: Sandbox) -> None:
    async with make_cloudflare_client(sandbox.base_url, token="invalid-abc") as client:
        with pytest.raises(cloudflare.AuthenticationError) as verify:
            await client.user.tokens.verify()
        with pytest.raises(cloudflare.AuthenticationError) as listing:
            await client.r2.buckets.list(account_id=ACCOUNT)

    assert error_codes(verify.value) == error_codes(listing.value) == [1000]
    assert verify.value.status_code == 401


async def test_missing_token_answers_401(sandbox: Sandbox, control_http: httpx.AsyncClient) -> None:
    response = await control_http.get("/cloudflare/client/v4/user/tokens/verify")

    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["errors"][0]["code"] == 9106


async def test_limited_token_reads_but_cannot_write(
    sandbox: Sandbox, control_http: httpx.AsyncClient
) -> None:
    async with make_cloudflare_client(sandbox.base_url, token="limited-ro") as client:
        verified = await client.user.tokens.verify()
        buckets = await client.r2.buckets.list(account_id=ACCOUNT)
        with pytest.raises(cloudflare.PermissionDeniedError) as denied:
            await client.d1.database.create(account_id=ACCOUNT, name="nope")

    assert verified is not None
    assert verified.status == "active"
    assert buckets.buckets == []
    assert error_codes(denied.value)[0] == 10000
    assert "may read but not change" in str(denied.value.body)
    assert await cloudflare_ledger(control_http) == []


# ----------------------------------------------------- dispatch namespaces


async def test_namespace_create_get_list_delete(cloudflare_client: AsyncCloudflare) -> None:
    namespaces = cloudflare_client.workers_for_platforms.dispatch.namespaces
    namespace_id = await create_namespace(cloudflare_client)

    got = await namespaces.get(NAMESPACE, account_id=ACCOUNT)
    listed = [ns async for ns in namespaces.list(account_id=ACCOUNT)]
    elsewhere = [ns async for ns in namespaces.list(account_id=OTHER_ACCOUNT)]
    await namespaces.delete(NAMESPACE, account_id=ACCOUNT)

    assert got is not None
    assert (got.namespace_id, got.namespace_name, got.script_count) == (namespace_id, NAMESPACE, 0)
    assert [ns.namespace_name for ns in listed] == [NAMESPACE]
    assert elsewhere == []
    with pytest.raises(cloudflare.NotFoundError):
        await namespaces.get(NAMESPACE, account_id=ACCOUNT)


async def test_namespace_names_are_unique_per_account(cloudflare_client: AsyncCloudflare) -> None:
    await create_namespace(cloudflare_client)
    await create_namespace(cloudflare_client, name="other")  # another name is fine
    await cloudflare_client.workers_for_platforms.dispatch.namespaces.create(
        account_id=OTHER_ACCOUNT, name=NAMESPACE
    )  # the same name in another account is fine

    with pytest.raises(cloudflare.ConflictError) as conflict:
        await create_namespace(cloudflare_client)

    assert error_codes(conflict.value) == [10052]


# ------------------------------------------------------------------ scripts


async def test_multipart_upload_keeps_modules_and_bindings(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    deployed = await deployed_shop(cloudflare_client)
    scripts = cloudflare_client.workers_for_platforms.dispatch.namespaces.scripts

    got = await scripts.get("storefront", account_id=ACCOUNT, dispatch_namespace=NAMESPACE)
    bindings = [
        b.to_dict()
        async for b in scripts.bindings.get(
            "storefront", account_id=ACCOUNT, dispatch_namespace=NAMESPACE
        )
    ]
    summary = (await control_http.get(f"/_sandbox/cloudflare/accounts/{ACCOUNT}")).json()

    assert got.dispatch_namespace == NAMESPACE
    assert got.script is not None
    assert got.script.handlers == ["fetch"]
    assert got.script.compatibility_date == "2026-01-01"
    assert {(b["type"], b["name"]) for b in bindings} == {
        ("plain_text", "SHOP_NAME"),
        ("d1", "DB"),
        ("r2_bucket", "IMAGES"),
    }
    assert next(b for b in bindings if b["name"] == "DB")["database_id"] == deployed["database_id"]
    (script,) = summary["namespaces"][0]["scripts"]
    assert script["modules"] == {
        "index.js": {
            "content_type": "application/javascript+module",
            "size": len(INDEX_JS.encode()),
            "sha256": hashlib.sha256(INDEX_JS.encode()).hexdigest(),
        }
    }
    assert script["main_module"] == "index.js"


async def test_upload_keeps_module_bytes_exactly(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    strings = "export const hi = 'héllo — ✓ 🕯️'\r\n\r\n--boundary-lookalike\nexport const x = 1;\n"
    await create_namespace(cloudflare_client)
    await upload_script(
        cloudflare_client, modules={"index.js": INDEX_JS, "lib/strings.js": strings}
    )

    summary = (await control_http.get(f"/_sandbox/cloudflare/accounts/{ACCOUNT}")).json()

    modules = summary["namespaces"][0]["scripts"][0]["modules"]
    assert modules["lib/strings.js"]["sha256"] == hashlib.sha256(strings.encode()).hexdigest()


async def test_upload_is_an_upsert_and_checks_modules_and_bindings(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    await create_namespace(cloudflare_client)
    first = await upload_script(cloudflare_client)
    second = await upload_script(
        cloudflare_client, modules={"index.js": INDEX_JS, "lib/util.js": "export const x = 1"}
    )
    with pytest.raises(cloudflare.BadRequestError) as no_main:
        await upload_script(cloudflare_client, modules={"main.js": INDEX_JS})
    with pytest.raises(cloudflare.BadRequestError) as unknown_d1:
        await upload_script(cloudflare_client, bindings=[{"type": "d1", "name": "DB", "id": "x"}])
    with pytest.raises(cloudflare.NotFoundError) as no_namespace:
        await upload_script(cloudflare_client, namespace="missing")

    assert first.id == second.id
    assert first.etag != second.etag
    assert "No such module" in str(no_main.value.body)
    assert "does not exist" in str(unknown_d1.value.body)
    assert error_codes(no_namespace.value) == [10053]
    assert len(await live(control_http, "script")) == 1


async def test_deleting_a_namespace_deletes_its_scripts_and_secrets(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    scripts = cloudflare_client.workers_for_platforms.dispatch.namespaces.scripts
    await create_namespace(cloudflare_client)
    await upload_script(cloudflare_client, "one")
    await upload_script(cloudflare_client, "two")
    await scripts.secrets.update(
        "two",
        account_id=ACCOUNT,
        dispatch_namespace=NAMESPACE,
        name="TOKEN",
        text=SECRET_VALUE,
        type="secret_text",
    )
    await scripts.delete("one", account_id=ACCOUNT, dispatch_namespace=NAMESPACE, force=True)

    with pytest.raises(cloudflare.NotFoundError) as gone:
        await scripts.get("one", account_id=ACCOUNT, dispatch_namespace=NAMESPACE)
    assert error_codes(gone.value) == [10007]
    assert [e["name"] for e in await live(control_http, "script")] == ["two"]

    await cloudflare_client.workers_for_platforms.dispatch.namespaces.delete(
        NAMESPACE, account_id=ACCOUNT
    )
    assert all(e["deleted"] for e in await cloudflare_ledger(control_http))


async def test_reupload_drops_secrets_unless_kept(cloudflare_client: AsyncCloudflare) -> None:
    secrets = cloudflare_client.workers_for_platforms.dispatch.namespaces.scripts.secrets
    where = {"account_id": ACCOUNT, "dispatch_namespace": NAMESPACE}
    await create_namespace(cloudflare_client)
    await upload_script(cloudflare_client)
    await secrets.update("storefront", name="A", text="1", type="secret_text", **where)

    await upload_script(cloudflare_client, keep_bindings=["secret_text"])
    kept = [s.name async for s in secrets.list("storefront", **where)]
    await upload_script(cloudflare_client)
    dropped = [s.name async for s in secrets.list("storefront", **where)]

    assert kept == ["A"]
    assert dropped == []


# ------------------------------------------------------------------ secrets


async def test_secrets_are_stored_but_never_echoed(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    secrets = cloudflare_client.workers_for_platforms.dispatch.namespaces.scripts.secrets
    where = {"account_id": ACCOUNT, "dispatch_namespace": NAMESPACE}
    await create_namespace(cloudflare_client)
    await upload_script(
        cloudflare_client, bindings=[{"type": "secret_text", "name": "BOUND", "text": SECRET_VALUE}]
    )

    put = await secrets.with_raw_response.update(
        "storefront", name="PAYMENT_WEBHOOK_SECRET", text=SECRET_VALUE, type="secret_text", **where
    )
    listed = await secrets.with_raw_response.list("storefront", **where)
    got = await secrets.get("PAYMENT_WEBHOOK_SECRET", script_name="storefront", **where)
    bindings = await cloudflare_client.workers_for_platforms.dispatch.namespaces.scripts.with_raw_response.bindings.get(  # noqa: E501
        "storefront", **where
    )
    with pytest.raises(cloudflare.BadRequestError) as bad:
        await secrets.update("storefront", name="", text=SECRET_VALUE, type="secret_text", **where)
    summary = await control_http.get(f"/_sandbox/cloudflare/accounts/{ACCOUNT}")
    ledger = await control_http.get("/_sandbox/ledger")

    assert sorted(s.name for s in (await listed.parse()).result) == [
        "BOUND",
        "PAYMENT_WEBHOOK_SECRET",
    ]
    assert (got.name, got.type) == ("PAYMENT_WEBHOOK_SECRET", "secret_text")
    for text in (put.http_response.text, listed.http_response.text, bindings.http_response.text):
        assert SECRET_VALUE not in text
    assert SECRET_VALUE not in json.dumps(bad.value.body)
    assert SECRET_VALUE not in summary.text
    assert SECRET_VALUE not in ledger.text
    assert len(await live(control_http, "script_secret")) == 2

    await secrets.delete("PAYMENT_WEBHOOK_SECRET", script_name="storefront", **where)
    with pytest.raises(cloudflare.NotFoundError):
        await secrets.get("PAYMENT_WEBHOOK_SECRET", script_name="storefront", **where)
    assert [e["name"] for e in await live(control_http, "script_secret")] == ["BOUND"]


# ----------------------------------------------------------------------- D1


async def test_d1_create_get_list_delete(cloudflare_client: AsyncCloudflare) -> None:
    database_id = await create_d1(cloudflare_client)
    await create_d1(cloudflare_client, "candle-shop-main-archive")

    got = await cloudflare_client.d1.database.get(database_id, account_id=ACCOUNT)
    everything = [d.name async for d in cloudflare_client.d1.database.list(account_id=ACCOUNT)]
    named = [
        d.name async for d in cloudflare_client.d1.database.list(account_id=ACCOUNT, name="archive")
    ]
    paged = await cloudflare_client.d1.database.list(account_id=ACCOUNT, per_page=1, page=2)
    await cloudflare_client.d1.database.delete(database_id, account_id=ACCOUNT)

    assert (got.uuid, got.name, got.num_tables) == (database_id, "candle-shop-main", 0)
    assert sorted(everything) == ["candle-shop-main", "candle-shop-main-archive"]
    assert named == ["candle-shop-main-archive"]
    assert [d.name for d in paged.result] == ["candle-shop-main-archive"]
    with pytest.raises(cloudflare.NotFoundError) as gone:
        await cloudflare_client.d1.database.get(database_id, account_id=ACCOUNT)
    assert error_codes(gone.value) == [7404]


async def test_d1_names_are_unique_per_account(cloudflare_client: AsyncCloudflare) -> None:
    await create_d1(cloudflare_client)

    with pytest.raises(cloudflare.BadRequestError) as conflict:
        await create_d1(cloudflare_client)

    assert error_codes(conflict.value) == [7502]
    assert "already exists" in str(conflict.value.body)


async def test_d1_migration_insert_and_select_round_trip(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    database_id = await create_d1(cloudflare_client)

    migrated = await query(cloudflare_client, database_id, MIGRATION + ";")
    inserted = await query(
        cloudflare_client,
        database_id,
        "INSERT INTO items (name, price_cents) VALUES (?, ?)",
        ["Beeswax pillar", "2400"],
    )
    two = await query(
        cloudflare_client,
        database_id,
        "INSERT INTO items (name) VALUES ('Soy; tealight'); SELECT name, price_cents FROM items "
        "ORDER BY id",
    )
    got = await cloudflare_client.d1.database.get(database_id, account_id=ACCOUNT)
    summary = (await control_http.get(f"/_sandbox/cloudflare/accounts/{ACCOUNT}")).json()

    assert migrated[0].success is True
    assert inserted[0].meta is not None
    assert (inserted[0].meta.changes, inserted[0].meta.last_row_id) == (1, 1)
    assert len(two) == 2
    assert two[1].results == [
        {"name": "Beeswax pillar", "price_cents": 2400},
        {"name": "Soy; tealight", "price_cents": 0},
    ]
    assert got.num_tables == 1
    assert summary["d1_databases"][0]["tables"] == {"items": 2}


async def test_d1_sql_error_answers_400_and_rolls_back(cloudflare_client: AsyncCloudflare) -> None:
    database_id = await create_d1(cloudflare_client)
    await query(cloudflare_client, database_id, MIGRATION)

    with pytest.raises(cloudflare.BadRequestError) as syntax:
        await query(cloudflare_client, database_id, "SELEC 1")
    with pytest.raises(cloudflare.BadRequestError) as half:
        await query(
            cloudflare_client,
            database_id,
            "INSERT INTO items (name) VALUES ('kept?'); INSERT INTO nowhere VALUES (1)",
        )
    rows = await query(cloudflare_client, database_id, "SELECT count(*) AS n FROM items")

    assert error_codes(syntax.value) == [7500]
    assert "syntax error" in str(syntax.value.body)
    assert "SQLITE_ERROR" in str(syntax.value.body)
    assert "no such table: nowhere" in str(half.value.body)
    assert rows[0].results == [{"n": 0}]


# ----------------------------------------------------------------------- R2


async def test_r2_bucket_create_get_list_delete(cloudflare_client: AsyncCloudflare) -> None:
    buckets = cloudflare_client.r2.buckets
    created = await buckets.create(account_id=ACCOUNT, name="candle-shop-images")
    await buckets.create(account_id=ACCOUNT, name="other-bucket")

    got = await buckets.get("candle-shop-images", account_id=ACCOUNT)
    listed = await buckets.list(account_id=ACCOUNT)
    matching = await buckets.list(account_id=ACCOUNT, name_contains="candle")
    await buckets.delete("candle-shop-images", account_id=ACCOUNT)

    assert created.name == got.name == "candle-shop-images"
    assert got.storage_class == "Standard"
    assert got.creation_date
    assert [b.name for b in listed.buckets or []] == ["candle-shop-images", "other-bucket"]
    assert [b.name for b in matching.buckets or []] == ["candle-shop-images"]
    with pytest.raises(cloudflare.NotFoundError) as gone:
        await buckets.get("candle-shop-images", account_id=ACCOUNT)
    assert error_codes(gone.value) == [10006]


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "Candle-Images", "candle_images", "-candle", "candle-", "cand.le"]
)
async def test_r2_rejects_invalid_bucket_names(
    cloudflare_client: AsyncCloudflare, name: str
) -> None:
    with pytest.raises(cloudflare.BadRequestError) as invalid:
        await cloudflare_client.r2.buckets.create(account_id=ACCOUNT, name=name)

    assert error_codes(invalid.value) == [10005]


async def test_r2_bucket_names_are_unique_per_account(cloudflare_client: AsyncCloudflare) -> None:
    await cloudflare_client.r2.buckets.create(account_id=ACCOUNT, name="abc")

    with pytest.raises(cloudflare.ConflictError) as conflict:
        await cloudflare_client.r2.buckets.create(account_id=ACCOUNT, name="abc")

    assert error_codes(conflict.value) == [10004]


async def test_r2_cors_put_get_delete(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    cors = cloudflare_client.r2.buckets.cors
    await cloudflare_client.r2.buckets.create(account_id=ACCOUNT, name="candle-shop-images")
    with pytest.raises(cloudflare.NotFoundError) as unset:
        await cors.get("candle-shop-images", account_id=ACCOUNT)

    rule = {
        "allowed": {"methods": ["GET", "HEAD"], "origins": ["https://shop.candles.example.com"]},
        "max_age_seconds": 3600,
    }
    await cors.update("candle-shop-images", account_id=ACCOUNT, rules=[rule])  # type: ignore[list-item]
    got = await cors.get("candle-shop-images", account_id=ACCOUNT)
    with pytest.raises(cloudflare.BadRequestError):
        await cors.update(
            "candle-shop-images",
            account_id=ACCOUNT,
            rules=[{"allowed": {"methods": ["PATCH"], "origins": ["*"]}}],  # type: ignore[list-item]
        )
    await cors.delete("candle-shop-images", account_id=ACCOUNT)

    assert error_codes(unset.value) == [10059]
    assert got.rules is not None
    assert got.rules[0].allowed.origins == ["https://shop.candles.example.com"]
    assert got.rules[0].max_age_seconds == 3600
    with pytest.raises(cloudflare.NotFoundError):
        await cors.get("candle-shop-images", account_id=ACCOUNT)
    (entry,) = [e for e in await cloudflare_ledger(control_http) if e["type"] == "r2_cors"]
    assert entry["deleted"] is True
    assert entry["origins"] == ["https://shop.candles.example.com"]


# ----------------------------------------------------------- custom domains


async def test_custom_domain_put_list_get_delete(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    domains = cloudflare_client.workers.domains
    await create_namespace(cloudflare_client)
    await upload_script(cloudflare_client)
    await upload_script(cloudflare_client, "admin")
    hostname = "shop.candles.example.com"

    created = await domains.update(
        account_id=ACCOUNT, hostname=hostname, service="storefront", zone_id=ZONE
    )
    again = await domains.update(
        account_id=ACCOUNT, hostname=hostname, service="storefront", zone_id=ZONE
    )
    with pytest.raises(cloudflare.ConflictError) as taken:
        await domains.update(account_id=ACCOUNT, hostname=hostname, service="admin", zone_id=ZONE)
    with pytest.raises(cloudflare.NotFoundError) as no_worker:
        await domains.update(
            account_id=ACCOUNT, hostname="x.candles.example.com", service="ghost", zone_id=ZONE
        )
    by_hostname = [d async for d in domains.list(account_id=ACCOUNT, hostname=hostname)]
    by_service = [d async for d in domains.list(account_id=ACCOUNT, service="admin")]
    got = await domains.get(created.id, account_id=ACCOUNT)
    await domains.delete(created.id, account_id=ACCOUNT)

    assert again.id == created.id
    assert (got.hostname, got.service, got.zone_id, got.environment) == (
        hostname,
        "storefront",
        ZONE,
        "production",
    )
    assert error_codes(taken.value) == [100116]
    assert error_codes(no_worker.value) == [10007]
    assert [d.id for d in by_hostname] == [created.id]
    assert by_service == []
    assert [d async for d in domains.list(account_id=ACCOUNT)] == []
    (entry,) = [e for e in await cloudflare_ledger(control_http) if e["type"] == "custom_domain"]
    assert (entry["name"], entry["script"], entry["deleted"]) == (hostname, "storefront", True)


# -------------------------------------------------------------- DNS records


async def test_dns_records_create_list_get_delete(cloudflare_client: AsyncCloudflare) -> None:
    records = cloudflare_client.dns.records
    shop = await records.create(
        zone_id=ZONE,
        type="CNAME",
        name="shop",
        content="candle-shop.workers.dev",
        proxied=True,
        ttl=1,
    )
    for content in ("192.0.2.1", "192.0.2.2"):
        await records.create(zone_id=ZONE, type="A", name="api", content=content, ttl=1)
    await records.create(zone_id=ZONE, type="TXT", name="api", content="v=spf1 -all", ttl=300)
    assert shop is not None

    exact = [r async for r in records.list(zone_id=ZONE, name={"exact": "api"})]
    plain = [r async for r in records.list(zone_id=ZONE, name="shop", type="CNAME")]  # type: ignore[arg-type]
    by_type = [r async for r in records.list(zone_id=ZONE, type="A")]
    paged = await records.list(zone_id=ZONE, per_page=2, page=2)
    other_zone = [r async for r in records.list(zone_id="another-zone")]
    got = await records.get(shop.id, zone_id=ZONE)
    deleted = await records.delete(shop.id, zone_id=ZONE)

    assert sorted(r.type for r in exact) == ["A", "A", "TXT"]
    assert [r.id for r in plain] == [shop.id]
    assert [r.content for r in by_type] == ["192.0.2.1", "192.0.2.2"]
    assert len(paged.result) == 2
    assert other_zone == []
    assert got is not None
    assert (got.name, got.content, got.proxied, got.proxiable) == (
        "shop",
        "candle-shop.workers.dev",
        True,
        True,
    )
    assert deleted is not None
    assert deleted.id == shop.id
    with pytest.raises(cloudflare.NotFoundError) as gone:
        await records.get(shop.id, zone_id=ZONE)
    assert error_codes(gone.value) == [81044]


async def test_dns_conflicts_and_validation(cloudflare_client: AsyncCloudflare) -> None:
    records = cloudflare_client.dns.records
    await records.create(zone_id=ZONE, type="CNAME", name="shop", content="a.example.com", ttl=1)
    await records.create(zone_id=ZONE, type="A", name="api", content="192.0.2.1", ttl=1)

    with pytest.raises(cloudflare.BadRequestError) as beside_cname:
        await records.create(zone_id=ZONE, type="A", name="shop", content="192.0.2.1", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as cname_beside:
        await records.create(zone_id=ZONE, type="CNAME", name="api", content="b.example", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as identical:
        await records.create(
            zone_id=ZONE, type="CNAME", name="SHOP", content="a.example.com", ttl=1
        )
    with pytest.raises(cloudflare.BadRequestError) as bad_ip:
        await records.create(zone_id=ZONE, type="A", name="api", content="not-an-ip", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as bad_proxy:
        await records.create(zone_id=ZONE, type="TXT", name="t", content="x", proxied=True, ttl=1)

    assert error_codes(beside_cname.value) == [81054]
    assert error_codes(cname_beside.value) == [81053]
    assert error_codes(identical.value) == [81058]
    assert error_codes(bad_ip.value) == error_codes(bad_proxy.value) == [9207]


# ------------------------------------------------------------ cron triggers


async def test_cron_triggers_put_get_and_clear(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    schedules = cloudflare_client.workers.scripts.schedules
    await create_namespace(cloudflare_client)
    await upload_script(cloudflare_client)

    first = await schedules.update("storefront", account_id=ACCOUNT, body=[{"cron": "0 3 * * *"}])
    both = await schedules.update(
        "storefront", account_id=ACCOUNT, body=[{"cron": "0 3 * * *"}, {"cron": "*/15 * * * *"}]
    )
    got = await schedules.get("storefront", account_id=ACCOUNT)
    cron_entries = [e for e in await cloudflare_ledger(control_http) if e["type"] == "cron"]
    cleared = await schedules.update("storefront", account_id=ACCOUNT, body=[])
    with pytest.raises(cloudflare.BadRequestError) as invalid:
        await schedules.update("storefront", account_id=ACCOUNT, body=[{"cron": "every day"}])
    with pytest.raises(cloudflare.NotFoundError) as unknown:
        await schedules.update("ghost", account_id=ACCOUNT, body=[{"cron": "0 3 * * *"}])

    assert [s.cron for s in first.schedules] == ["0 3 * * *"]
    assert [s.cron for s in both.schedules] == [s.cron for s in got.schedules]
    assert both.schedules[0].created_on == first.schedules[0].created_on
    assert len(cron_entries) == 2
    assert cron_entries[0]["script"] == "storefront"
    assert cleared.schedules == []
    assert error_codes(invalid.value) == [10100]
    assert error_codes(unknown.value) == [10007]
    assert await live(control_http, "cron") == []


# -------------------------------------------------------- ledger and control


async def test_ledger_shows_every_resource_made_and_removed(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    deployed = await deployed_shop(cloudflare_client)
    secrets = cloudflare_client.workers_for_platforms.dispatch.namespaces.scripts.secrets
    where = {"account_id": ACCOUNT, "dispatch_namespace": NAMESPACE}
    await secrets.update("storefront", name="S", text=SECRET_VALUE, type="secret_text", **where)
    await cloudflare_client.r2.buckets.cors.update(
        "candle-shop-images",
        account_id=ACCOUNT,
        rules=[{"allowed": {"methods": ["GET"], "origins": ["https://a.example"]}}],
    )
    domain = await cloudflare_client.workers.domains.update(
        account_id=ACCOUNT, hostname="shop.candles.example.com", service="storefront", zone_id=ZONE
    )
    record = await cloudflare_client.dns.records.create(
        zone_id=ZONE, type="CNAME", name="www", content="shop.candles.example.com", ttl=1
    )
    await cloudflare_client.workers.scripts.schedules.update(
        "storefront", account_id=ACCOUNT, body=[{"cron": "0 3 * * *"}]
    )
    made = await cloudflare_ledger(control_http)

    # Tear down as the engine's rollback would.
    assert record is not None
    await cloudflare_client.dns.records.delete(record.id, zone_id=ZONE)
    await cloudflare_client.workers.domains.delete(domain.id, account_id=ACCOUNT)
    await cloudflare_client.r2.buckets.delete("candle-shop-images", account_id=ACCOUNT)
    await cloudflare_client.d1.database.delete(deployed["database_id"], account_id=ACCOUNT)
    await cloudflare_client.workers_for_platforms.dispatch.namespaces.delete(
        NAMESPACE, account_id=ACCOUNT
    )
    removed = await cloudflare_ledger(control_http)

    assert sorted(e["type"] for e in made) == sorted(
        [
            "namespace",
            "d1_database",
            "r2_bucket",
            "script",
            "script_secret",
            "r2_cors",
            "custom_domain",
            "dns_record",
            "cron",
        ]
    )
    for entry in made:
        assert entry["deleted"] is False
        assert entry["deleted_at"] is None
        assert entry["created"]
        assert entry["account_id"] == (None if entry["type"] == "dns_record" else ACCOUNT)
    script = next(e for e in made if e["type"] == "script")
    assert (script["name"], script["namespace"], script["modules"]) == (
        "storefront",
        NAMESPACE,
        ["index.js"],
    )
    assert next(e for e in made if e["type"] == "dns_record")["zone_id"] == ZONE
    assert [e["id"] for e in removed] == [e["id"] for e in made]
    assert all(e["deleted"] and e["deleted_at"] for e in removed)


async def test_hosts_endpoint_answers_for_a_live_custom_domain(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    host = "/_sandbox/cloudflare/hosts/shop.candles.example.com"
    before = await control_http.get(host + "/")
    await create_namespace(cloudflare_client)
    await upload_script(cloudflare_client)
    domain = await cloudflare_client.workers.domains.update(
        account_id=ACCOUNT, hostname="shop.candles.example.com", service="storefront", zone_id=ZONE
    )

    root = await control_http.get(host + "/")
    page = await control_http.get(host + "/products/1")
    await cloudflare_client.workers_for_platforms.dispatch.namespaces.scripts.delete(
        "storefront", account_id=ACCOUNT, dispatch_namespace=NAMESPACE
    )
    without_script = await control_http.get(host + "/")
    await cloudflare_client.workers.domains.delete(domain.id, account_id=ACCOUNT)

    assert before.status_code == 404
    assert root.status_code == 200
    assert root.json()["script"] == "storefront"
    assert root.json()["path"] == "/"
    assert page.json()["path"] == "/products/1"
    assert without_script.status_code == 404


async def test_account_summary_lists_live_resources(
    cloudflare_client: AsyncCloudflare, control_http: httpx.AsyncClient
) -> None:
    await deployed_shop(cloudflare_client)
    await cloudflare_client.dns.records.create(
        zone_id=ZONE, type="CNAME", name="shop", content="candle-shop.workers.dev", ttl=1
    )

    summary = (await control_http.get(f"/_sandbox/cloudflare/accounts/{ACCOUNT}")).json()
    empty = (await control_http.get(f"/_sandbox/cloudflare/accounts/{OTHER_ACCOUNT}")).json()
    zone = (await control_http.get(f"/_sandbox/cloudflare/zones/{ZONE}")).json()

    assert [ns["name"] for ns in summary["namespaces"]] == [NAMESPACE]
    assert [db["name"] for db in summary["d1_databases"]] == ["candle-shop-main"]
    assert [b["name"] for b in summary["r2_buckets"]] == ["candle-shop-images"]
    assert empty["namespaces"] == empty["d1_databases"] == empty["r2_buckets"] == []
    assert [r["name"] for r in zone["dns_records"]] == ["shop"]


async def test_unknown_path_answers_cloudflare_404(cloudflare_client: AsyncCloudflare) -> None:
    with pytest.raises(cloudflare.NotFoundError) as unknown:
        await cloudflare_client.get("/accounts/x/no/such/thing", cast_to=object)

    assert error_codes(unknown.value) == [7003]
    with pytest.raises(cloudflare.APIStatusError) as wrong_method:
        await cloudflare_client.post(f"/accounts/{ACCOUNT}/workers/domains", cast_to=object)
    assert wrong_method.value.status_code == 405


# -------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, cloudflare.InternalServerError), (403, cloudflare.PermissionDeniedError)],
)
async def test_injected_faults_answer_cloudflare_errors(
    cloudflare_client: AsyncCloudflare,
    control_http: httpx.AsyncClient,
    status: int,
    error: type[cloudflare.APIStatusError],
) -> None:
    fault = {"provider": "cloudflare", "path": "/d1/database", "status": status, "times": 1}
    (await control_http.post("/_sandbox/faults", json=fault)).raise_for_status()

    with pytest.raises(error) as failed:
        await create_d1(cloudflare_client)
    retried = await create_d1(cloudflare_client)

    assert failed.value.status_code == status
    assert error_codes(failed.value) == [10_000 + status]
    assert [e["id"] for e in await live(control_http, "d1_database")] == [retried]
