"""A stateful Cloudflare API stand-in: the calls of the nine deploy steps and their deletes.

Served under ``/cloudflare/client/v4`` with the paths, bodies and envelopes of
Cloudflare's API v4, so the official ``cloudflare`` SDK (5.9) works unchanged
with ``base_url=f"{sandbox}/cloudflare/client/v4"``. Every answer is
``{"success", "errors": [{"code", "message"}], "messages", "result"}``; lists
add ``result_info`` (``page``, ``per_page``, ``count``, ``total_count``; R2's
bucket list a ``cursor`` instead).

State is per account id (any account id exists, empty until used) and DNS
records per zone id (any zone id exists):

- tokens: ``GET /user/tokens/verify``, ``GET /accounts/{a}/tokens/verify``;
- Workers for Platforms: dispatch namespaces (names unique per account;
  deleting one deletes its scripts), scripts in a namespace (multipart upload
  is an upsert; get, bindings, delete), their secrets (put, list, get, delete);
- plain Workers scripts (upload, delete) and cron triggers
  ``PUT|GET /accounts/{a}/workers/scripts/{name}/schedules`` for any script of
  the account with that name, plain or in a namespace (an empty list deletes;
  deleting the last script of that name deletes its triggers);
- D1 databases (names unique per account; ``?name=`` lists names containing
  it, so compare names exactly), and ``query``: the SQL really runs, on an
  in-memory SQLite database per D1 database, all statements of a call in one
  transaction (an error rolls the whole call back);
- R2 buckets (names unique per account, validated as R2 does) and their CORS;
- Workers custom domains (``PUT`` is an upsert: the same hostname for the same
  service answers the existing domain; for another service 409 unless
  ``override_existing_origin``);
- DNS records (a name is stored lower-cased, without a trailing dot, and
  otherwise as given: the sandbox does not know a zone's domain).

A script upload is ``multipart/form-data``: a ``metadata`` JSON part
(``main_module`` or ``body_part``, ``compatibility_date``, ``bindings``,
``keep_bindings``) and one part per module, named by its filename (the SDK
sends every module as a part named ``files``). As on Cloudflare, an upload
replaces the script's bindings, secrets included, except the binding types
listed in ``keep_bindings``; a ``d1`` binding must name a D1 database of the
account (``database_id`` or ``id``) and an ``r2_bucket`` binding an existing
bucket (``bucket_name``).

Authentication is ``Authorization: Bearer <token>``. Any token is valid with
every permission, except tokens starting ``invalid-`` (401, code 1000, on
every call, verify included) and ``limited-`` (verify and reads pass; every
POST/PUT/PATCH/DELETE answers 403, code 10000). A secret's text is kept only
to exist: it is never answered, logged, written to the ledger or echoed in a
validation error.

Errors (Cloudflare's codes where known, else sandbox codes):

========  ====  ==============================================================
code      HTTP  meaning
========  ====  ==============================================================
1000      401   invalid API token (``invalid-...``)
9106      401   no ``Authorization: Bearer`` header
6111      401   an ``Authorization`` header that is not ``Bearer <token>``
10000     403   the token may not write (``limited-...``); with 9109
7003      404   no such API path (405, code 10405, for a known path and another method)
10001     400   malformed body (not JSON, or fields missing or of the wrong type)
10052     409   a dispatch namespace with that name already exists
10053     404   no such dispatch namespace
10007     404   no such Worker script
10016     400   invalid Worker name
10021     400   invalid script upload (metadata, modules, bindings)
10056     404   no such secret on the script
10100     400   invalid cron expression
7400      400   invalid D1 request (name, query body)
7404      404   no such D1 database
7500      400   the SQL failed (SQLite's message and error name)
7502      400   a D1 database with that name already exists
10004     409   an R2 bucket with that name already exists
10005     400   invalid R2 bucket name
10006     404   no such R2 bucket
10059     404   the bucket has no CORS configuration
10040     400   invalid CORS rules
100111    400   invalid custom domain hostname
100114    404   no such custom domain
100116    409   the hostname is already a custom domain of another Worker
100117    409   the hostname already has DNS records of its own
9207      400   invalid DNS record (type, content, ttl, proxied)
81044     404   no such DNS record
81053     400   a CNAME where records (or a custom domain) have that name
81054     400   a record where a CNAME has that name
81058     400   an identical DNS record already exists
========  ====  ==============================================================

Every resource created is recorded in the ledger under ``cloudflare_resources``
(one entry per creation, keyed by the resource's id; see :func:`_ledger_created`);
a delete (or a cascade: namespace → scripts → secrets and triggers, bucket →
CORS) marks it ``deleted``, so a test can prove that everything made was removed.

Control endpoints under ``/_sandbox/cloudflare``: ``GET /hosts/{hostname}/{path}``
(200 when a custom domain with that hostname points at an uploaded script,
else 404: the engine's post-deploy HTTP check), ``GET /accounts/{account_id}``
(the account's live resources) and ``GET /zones/{zone_id}`` (its DNS records).
"""

from __future__ import annotations

import email.policy
import hashlib
import ipaddress
import json
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import Message
from email.parser import BytesParser
from typing import Any, Literal, TypeVar, cast
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import QueryParams
from starlette.routing import Match

from sandbox.state import SandboxState, StateDep, get_state, rfc3339

PREFIX = "/cloudflare/client/v4"
router = APIRouter(prefix=PREFIX, tags=["cloudflare"])
control_router = APIRouter(prefix="/_sandbox/cloudflare", tags=["sandbox"])

LEDGER_KIND = "cloudflare_resources"

CODE_INVALID_TOKEN = 1000
CODE_MISSING_AUTH = 9106
CODE_BAD_AUTH_HEADER = 6111
CODE_AUTHENTICATION = 10000
CODE_UNAUTHORIZED_RESOURCE = 9109
CODE_NO_ROUTE = 7003
CODE_METHOD_NOT_ALLOWED = 10405
CODE_MALFORMED = 10001
CODE_NAMESPACE_EXISTS = 10052
CODE_NAMESPACE_NOT_FOUND = 10053
CODE_SCRIPT_NOT_FOUND = 10007
CODE_INVALID_WORKER_NAME = 10016
CODE_SCRIPT_INVALID = 10021
CODE_SECRET_NOT_FOUND = 10056
CODE_INVALID_CRON = 10100
CODE_D1_INVALID = 7400
CODE_D1_NOT_FOUND = 7404
CODE_D1_QUERY = 7500
CODE_D1_EXISTS = 7502
CODE_R2_EXISTS = 10004
CODE_R2_INVALID_NAME = 10005
CODE_R2_NOT_FOUND = 10006
CODE_R2_NO_CORS = 10059
CODE_R2_INVALID_CORS = 10040
CODE_DOMAIN_INVALID = 100111
CODE_DOMAIN_NOT_FOUND = 100114
CODE_DOMAIN_IN_USE = 100116
CODE_DOMAIN_HAS_DNS = 100117
CODE_DNS_INVALID = 9207
CODE_DNS_NOT_FOUND = 81044
CODE_DNS_NAME_TAKEN = 81053
CODE_DNS_CNAME_EXISTS = 81054
CODE_DNS_IDENTICAL = 81058

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECRET_BINDING_TYPES = frozenset({"secret_text", "secret_key"})
NAMESPACE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
WORKER_NAME = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,62}$")
D1_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
R2_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#-]+$")
MODULE_HANDLERS = ("fetch", "scheduled", "queue", "email", "tail")
DNS_TYPES = frozenset(
    {"A", "AAAA", "CNAME", "MX", "NS", "OPENPGPKEY", "PTR", "TXT", "CAA", "CERT", "DNSKEY"}
    | {"DS", "HTTPS", "LOC", "NAPTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "URI"}
)
PROXIABLE_TYPES = frozenset({"A", "AAAA", "CNAME"})
CORS_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})

M = TypeVar("M", bound=BaseModel)


def _now() -> str:
    return rfc3339(time.time())


def _hex_id() -> str:
    return secrets.token_hex(16)


# ------------------------------------------------------- errors and envelope


class CloudflareError(Exception):
    """An error answer: HTTP ``status`` and Cloudflare's ``errors`` list."""

    def __init__(self, status: int, code: int, message: str, *more: tuple[int, str]) -> None:
        super().__init__(message)
        self.status = status
        self.errors = [(code, message), *more]

    def response(self) -> JSONResponse:
        return JSONResponse(
            {
                "success": False,
                "errors": [{"code": code, "message": message} for code, message in self.errors],
                "messages": [],
                "result": None,
            },
            status_code=self.status,
        )


def _envelope(
    result: Any,
    *,
    result_info: dict[str, Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> JSONResponse:
    body: dict[str, Any] = {
        "success": True,
        "errors": [],
        "messages": messages or [],
        "result": result,
    }
    if result_info is not None:
        body["result_info"] = result_info
    return JSONResponse(body, status_code=status)


@dataclass
class Listing:
    """A list answer: ``result`` is ``items``, plus ``result_info``."""

    items: list[Any]
    result_info: dict[str, Any]

    @classmethod
    def whole(cls, items: list[Any]) -> Listing:
        """Every item on one page (the SDK's ``SinglePage`` lists)."""
        count = len(items)
        return cls(
            items,
            {"page": 1, "per_page": max(count, 20), "count": count, "total_count": count},
        )

    @classmethod
    def page(cls, items: list[Any], query: QueryParams, *, default_per_page: int) -> Listing:
        """``?page=&per_page=`` pagination (the SDK's ``V4PagePaginationArray`` lists)."""
        page = _positive_int(query.get("page"), 1, "page")
        per_page = _positive_int(query.get("per_page"), default_per_page, "per_page")
        start = (page - 1) * per_page
        chosen = items[start : start + per_page]
        total = len(items)
        return cls(
            chosen,
            {
                "page": page,
                "per_page": per_page,
                "count": len(chosen),
                "total_count": total,
                "total_pages": max(1, -(-total // per_page)),
            },
        )


def _positive_int(raw: str | None, default: int, name: str) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise CloudflareError(400, CODE_MALFORMED, f"{name} must be a number.") from None
    if value < 1:
        raise CloudflareError(400, CODE_MALFORMED, f"{name} must be at least 1.")
    return value


def _query_flag(query: QueryParams, name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    return raw.lower() in ("true", "1", "yes")


def _validated(model: type[M], data: Any, code: int) -> M:
    """``data`` as ``model``, or a 400 naming the bad fields (never their values)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        raise CloudflareError(400, code, f"Invalid request body: {problems}") from None


# ---------------------------------------------------------------------- store


@dataclass
class Module:
    content_type: str
    content: bytes


@dataclass
class Script:
    """An uploaded Worker; ``namespace`` is None for a plain account script."""

    id: str
    name: str
    namespace: str | None
    main_module: str
    modules: dict[str, Module]
    bindings: list[dict[str, Any]]  # secret texts live here; see _public_binding
    compatibility_date: str | None
    compatibility_flags: list[str]
    etag: str
    created_on: str
    modified_on: str
    secret_ledger_ids: dict[str, str] = field(default_factory=dict)  # secret name → ledger id

    def secret_names(self) -> list[str]:
        return [b["name"] for b in self.bindings if b["type"] in SECRET_BINDING_TYPES]


@dataclass
class Namespace:
    id: str
    name: str
    created_on: str
    modified_on: str
    scripts: dict[str, Script] = field(default_factory=dict)


@dataclass
class D1Database:
    uuid: str
    name: str
    created_at: str
    connection: sqlite3.Connection = field(repr=False)


@dataclass
class BucketCors:
    ledger_id: str
    rules: list[dict[str, Any]]


@dataclass
class Bucket:
    ledger_id: str
    name: str
    creation_date: str
    location: str
    storage_class: str
    cors: BucketCors | None = None


@dataclass
class CustomDomain:
    id: str
    hostname: str
    service: str
    zone_id: str
    zone_name: str
    environment: str
    cert_id: str


@dataclass
class Schedule:
    ledger_id: str
    cron: str
    created_on: str
    modified_on: str


@dataclass
class Account:
    id: str
    namespaces: dict[str, Namespace] = field(default_factory=dict)  # by name
    scripts: dict[str, Script] = field(default_factory=dict)  # plain scripts, by name
    d1: dict[str, D1Database] = field(default_factory=dict)  # by uuid
    buckets: dict[str, Bucket] = field(default_factory=dict)  # by name
    domains: dict[str, CustomDomain] = field(default_factory=dict)  # by id
    schedules: dict[str, list[Schedule]] = field(default_factory=dict)  # by script name

    def scripts_named(self, name: str) -> list[Script]:
        found = [ns.scripts[name] for ns in self.namespaces.values() if name in ns.scripts]
        if name in self.scripts:
            found.append(self.scripts[name])
        return found


@dataclass
class CloudflareStore:
    accounts: dict[str, Account] = field(default_factory=dict)
    zones: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # zone → id → record

    def account(self, account_id: str) -> Account:
        existing = self.accounts.get(account_id)
        if existing is None:
            existing = self.accounts[account_id] = Account(id=account_id)
        return existing

    def zone(self, zone_id: str) -> dict[str, dict[str, Any]]:
        return self.zones.setdefault(zone_id, {})


# --------------------------------------------------------------------- ledger

ResourceType = Literal[
    "namespace",
    "script",
    "script_secret",
    "d1_database",
    "r2_bucket",
    "r2_cors",
    "custom_domain",
    "dns_record",
    "cron",
]


def _ledger_created(
    state: SandboxState,
    resource_type: ResourceType,
    entry_id: str,
    *,
    account_id: str | None,
    name: str,
    **details: Any,
) -> None:
    """Record a new resource: ``{"id", "type", "account_id", "name", "status",
    "deleted", "created", "deleted_at", "idempotency_key"}`` plus ``details``
    (``namespace``, ``script``, ``zone_id``, ...). Never a secret's text."""
    state.ledger.put(
        LEDGER_KIND,
        entry_id,
        {
            "type": resource_type,
            "account_id": account_id,
            "name": name,
            "status": "active",
            "deleted": False,
            "created": _now(),
            "deleted_at": None,
            "idempotency_key": None,
            **details,
        },
    )


def _ledger_updated(state: SandboxState, entry_id: str, **details: Any) -> None:
    state.ledger.put(LEDGER_KIND, entry_id, {**details, "updated": _now()})


def _ledger_deleted(state: SandboxState, entry_id: str) -> None:
    state.ledger.put(
        LEDGER_KIND, entry_id, {"status": "deleted", "deleted": True, "deleted_at": _now()}
    )


# ----------------------------------------------------------- authentication


def token_id(token: str) -> str:
    """The stable id ``/user/tokens/verify`` answers for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise CloudflareError(
            401, CODE_MISSING_AUTH, "Missing X-Auth-Key, X-Auth-Email or Authorization headers"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CloudflareError(401, CODE_BAD_AUTH_HEADER, "Invalid format for Authorization header")
    return token.strip()


def _check_token(request: Request) -> str:
    """The request's token, if it may make this call."""
    token = _bearer_token(request)
    if token.startswith("invalid-"):
        raise CloudflareError(401, CODE_INVALID_TOKEN, "Invalid API Token")
    if token.startswith("limited-") and request.method in WRITE_METHODS:
        raise CloudflareError(
            403,
            CODE_AUTHENTICATION,
            "Authentication error",
            (
                CODE_UNAUTHORIZED_RESOURCE,
                "Unauthorized to access requested resource: this API token may read but not "
                f"change resources ({request.method} {request.url.path.removeprefix(PREFIX)}).",
            ),
        )
    return token


@dataclass
class Call:
    """One authorised API call: the request, its raw body and the sandbox state."""

    request: Request
    state: SandboxState
    store: CloudflareStore
    token: str
    body: bytes

    @property
    def query(self) -> QueryParams:
        return self.request.query_params

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise CloudflareError(
                400, CODE_MALFORMED, "The request body is not valid JSON."
            ) from None

    def parse(self, model: type[M], code: int = CODE_MALFORMED) -> M:
        return _validated(model, self.json(), code)


Operation = Callable[[Call], Any]


async def _answer(request: Request, operation: Operation) -> Response:
    """Authorise, run ``operation`` and wrap what it returns in Cloudflare's envelope."""
    try:
        token = _check_token(request)
        state = get_state(request)
        call = Call(request, state, state.store(CloudflareStore), token, await request.body())
        outcome = operation(call)
    except CloudflareError as exc:
        return exc.response()
    if isinstance(outcome, Response):
        return outcome
    if isinstance(outcome, Listing):
        return _envelope(outcome.items, result_info=outcome.result_info)
    return _envelope(outcome)


# --------------------------------------------------------------------- tokens


def _verify(call: Call) -> Response:
    return _envelope(
        {"id": token_id(call.token), "status": "active"},
        messages=[{"code": 10000, "message": "This API Token is valid and active", "type": None}],
    )


@router.get("/user/tokens/verify")
async def verify_user_token(request: Request) -> Response:
    return await _answer(request, _verify)


@router.get("/accounts/{account_id}/tokens/verify")
async def verify_account_token(request: Request, account_id: str) -> Response:
    return await _answer(request, _verify)


# ------------------------------------------------ Workers for Platforms: namespaces


class NamespaceIn(BaseModel):
    name: str = Field(min_length=1)


def _namespace_view(namespace: Namespace, account_id: str) -> dict[str, Any]:
    return {
        "namespace_id": namespace.id,
        "namespace_name": namespace.name,
        "created_on": namespace.created_on,
        "created_by": account_id,
        "modified_on": namespace.modified_on,
        "modified_by": account_id,
        "script_count": len(namespace.scripts),
        "trusted_workers": False,
    }


def _namespace(account: Account, name: str) -> Namespace:
    namespace = account.namespaces.get(name)
    if namespace is None:
        raise CloudflareError(
            404, CODE_NAMESPACE_NOT_FOUND, f"Dispatch namespace '{name}' was not found."
        )
    return namespace


def _create_namespace(call: Call, account_id: str) -> dict[str, Any]:
    name = call.parse(NamespaceIn).name
    if not NAMESPACE_NAME.match(name):
        raise CloudflareError(
            400,
            CODE_MALFORMED,
            "A dispatch namespace name is 1-63 letters, digits, '-' or '_'.",
        )
    account = call.store.account(account_id)
    if name in account.namespaces:
        raise CloudflareError(
            409, CODE_NAMESPACE_EXISTS, f"A dispatch namespace named '{name}' already exists."
        )
    now = _now()
    namespace = Namespace(id=str(uuid.uuid4()), name=name, created_on=now, modified_on=now)
    account.namespaces[name] = namespace
    _ledger_created(call.state, "namespace", namespace.id, account_id=account_id, name=name)
    return _namespace_view(namespace, account_id)


def _delete_namespace(call: Call, account_id: str, name: str) -> None:
    account = call.store.account(account_id)
    namespace = _namespace(account, name)
    for script_name in list(namespace.scripts):
        _remove_script(call.state, account, namespace.scripts, script_name)
    del account.namespaces[name]
    _ledger_deleted(call.state, namespace.id)


@router.post("/accounts/{account_id}/workers/dispatch/namespaces")
async def create_namespace(request: Request, account_id: str) -> Response:
    return await _answer(request, lambda call: _create_namespace(call, account_id))


@router.get("/accounts/{account_id}/workers/dispatch/namespaces")
async def list_namespaces(request: Request, account_id: str) -> Response:
    def namespaces(call: Call) -> Listing:
        account = call.store.account(account_id)
        return Listing.whole(
            [_namespace_view(ns, account_id) for ns in account.namespaces.values()]
        )

    return await _answer(request, namespaces)


@router.get("/accounts/{account_id}/workers/dispatch/namespaces/{name}")
async def get_namespace(request: Request, account_id: str, name: str) -> Response:
    return await _answer(
        request,
        lambda call: _namespace_view(_namespace(call.store.account(account_id), name), account_id),
    )


@router.delete("/accounts/{account_id}/workers/dispatch/namespaces/{name}")
async def delete_namespace(request: Request, account_id: str, name: str) -> Response:
    return await _answer(request, lambda call: _delete_namespace(call, account_id, name))


# ------------------------------------------------------------ Workers: scripts


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    content: bytes


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a ``multipart/form-data`` body (with the stdlib's MIME parser)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise CloudflareError(
            400,
            CODE_SCRIPT_INVALID,
            "A script upload is multipart/form-data: a 'metadata' JSON part and one part "
            "per module.",
        )
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise CloudflareError(400, CODE_SCRIPT_INVALID, "The multipart body has no parts.")
    parts = []
    for part in cast(list[Message], message.get_payload()):
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts.append(
            Part(
                name=name if isinstance(name, str) else "",
                filename=part.get_filename(),
                content_type=part.get_content_type(),
                content=payload if isinstance(payload, bytes) else b"",
            )
        )
    return parts


class ScriptMetadataIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    main_module: str | None = None
    body_part: str | None = None
    compatibility_date: str | None = None
    compatibility_flags: list[str] = Field(default_factory=list)
    bindings: list[dict[str, Any]] = Field(default_factory=list)
    keep_bindings: list[str] = Field(default_factory=list)


@dataclass
class Upload:
    metadata: ScriptMetadataIn
    main_module: str
    modules: dict[str, Module]


def _parse_upload(call: Call) -> Upload:
    parts = parse_multipart(call.request.headers.get("content-type", ""), call.body)
    metadata_part = next((p for p in parts if p.name == "metadata"), None)
    if metadata_part is None:
        raise CloudflareError(400, CODE_SCRIPT_INVALID, "The upload has no 'metadata' part.")
    try:
        raw_metadata = json.loads(metadata_part.content)
    except ValueError:
        raise CloudflareError(
            400, CODE_SCRIPT_INVALID, "The 'metadata' part is not valid JSON."
        ) from None
    metadata = _validated(ScriptMetadataIn, raw_metadata, CODE_SCRIPT_INVALID)
    modules = {
        (p.filename or p.name): Module(p.content_type, p.content)
        for p in parts
        if p is not metadata_part
    }
    main = metadata.main_module or metadata.body_part
    if not main:
        raise CloudflareError(
            400, CODE_SCRIPT_INVALID, "The metadata names no main_module (or body_part)."
        )
    if main not in modules:
        raise CloudflareError(400, CODE_SCRIPT_INVALID, f'Uncaught Error: No such module "{main}".')
    _check_compatibility_date(metadata.compatibility_date)
    return Upload(metadata=metadata, main_module=main, modules=modules)


def _check_compatibility_date(value: str | None) -> None:
    if value is None:
        return
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise CloudflareError(
            400, CODE_SCRIPT_INVALID, f"Invalid compatibility date {value!r}: use YYYY-MM-DD."
        ) from None
    if parsed > datetime.now(UTC).date():
        raise CloudflareError(
            400, CODE_SCRIPT_INVALID, f"Can't set compatibility date in the future: {value}."
        )


def _binding_error(message: str) -> CloudflareError:
    return CloudflareError(400, CODE_SCRIPT_INVALID, message)


def _checked_binding(account: Account, binding: dict[str, Any]) -> dict[str, Any]:
    """One binding of the metadata, checked against what the account has."""
    kind, name = binding.get("type"), binding.get("name")
    if not isinstance(kind, str) or not isinstance(name, str) or not name:
        raise _binding_error("Every binding needs a 'type' and a 'name'.")
    if kind in ("plain_text", "secret_text") and not isinstance(binding.get("text"), str):
        raise _binding_error(f"Binding '{name}' ({kind}) needs a 'text' string.")
    if kind == "json" and "json" not in binding:
        raise _binding_error(f"Binding '{name}' (json) needs a 'json' value.")
    if kind == "d1":
        database_id = binding.get("database_id") or binding.get("id")
        if not isinstance(database_id, str) or database_id not in account.d1:
            raise _binding_error(
                f"D1 binding '{name}' references database {database_id!r}, which does not "
                "exist in this account."
            )
        return {**binding, "database_id": database_id, "id": database_id}
    if kind == "r2_bucket":
        bucket_name = binding.get("bucket_name")
        if not isinstance(bucket_name, str) or bucket_name not in account.buckets:
            raise _binding_error(
                f"R2 binding '{name}' references bucket {bucket_name!r}, which does not "
                "exist in this account."
            )
    return dict(binding)


def _new_bindings(
    account: Account, metadata: ScriptMetadataIn, previous: Script | None
) -> list[dict[str, Any]]:
    """The uploaded bindings, plus the previous ones of the ``keep_bindings`` types."""
    bindings = [_checked_binding(account, b) for b in metadata.bindings]
    names = [b["name"] for b in bindings]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _binding_error(f"Binding names must be unique: {', '.join(duplicates)}.")
    if previous is not None and metadata.keep_bindings:
        keep = set(metadata.keep_bindings)
        bindings += [
            dict(b) for b in previous.bindings if b["type"] in keep and b["name"] not in names
        ]
    return bindings


def _public_binding(binding: dict[str, Any]) -> dict[str, Any]:
    """A binding as the API shows it: a secret's text never leaves the sandbox."""
    if binding["type"] in SECRET_BINDING_TYPES:
        return {k: v for k, v in binding.items() if k not in ("text", "key_base64", "key_jwk")}
    return dict(binding)


def _ledger_binding(binding: dict[str, Any]) -> dict[str, Any]:
    keys = ("type", "name", "database_id", "bucket_name")
    return {k: binding[k] for k in keys if k in binding}


def _handlers(script: Script) -> list[str]:
    source = script.modules[script.main_module].content.decode("utf-8", errors="replace")
    return [h for h in MODULE_HANDLERS if re.search(rf"\b{h}\b", source)]


def _script_view(script: Script) -> dict[str, Any]:
    return {
        "id": script.id,
        "tag": script.id,
        "etag": script.etag,
        "handlers": _handlers(script),
        "compatibility_date": script.compatibility_date,
        "compatibility_flags": script.compatibility_flags,
        "created_on": script.created_on,
        "modified_on": script.modified_on,
        "has_assets": False,
        "has_modules": True,
        "logpush": False,
        "usage_model": "standard",
        "placement_mode": None,
        "tail_consumers": None,
        "tags": [],
    }


def _sync_secret_ledger(state: SandboxState, account_id: str, script: Script) -> None:
    """Ledger entries for the script's secrets: new ones created, gone ones deleted."""
    present = set(script.secret_names())
    for name in list(script.secret_ledger_ids):
        if name not in present:
            _ledger_deleted(state, script.secret_ledger_ids.pop(name))
    for name in present - set(script.secret_ledger_ids):
        entry_id = _hex_id()
        script.secret_ledger_ids[name] = entry_id
        _ledger_created(
            state,
            "script_secret",
            entry_id,
            account_id=account_id,
            name=name,
            namespace=script.namespace,
            script=script.name,
        )


def _upload_script(
    call: Call, account_id: str, namespace: str | None, script_name: str
) -> dict[str, Any]:
    if not WORKER_NAME.match(script_name):
        raise CloudflareError(
            400,
            CODE_INVALID_WORKER_NAME,
            "Invalid Worker name: use 1-63 lowercase letters, digits, '-' or '_'.",
        )
    account = call.store.account(account_id)
    scripts = _namespace(account, namespace).scripts if namespace is not None else account.scripts
    upload = _parse_upload(call)
    previous = scripts.get(script_name)
    bindings = _new_bindings(account, upload.metadata, previous)
    now = _now()
    digest = hashlib.sha256()
    for module_name, module in sorted(upload.modules.items()):
        digest.update(module_name.encode() + b"\0" + module.content)
    script = Script(
        id=previous.id if previous is not None else _hex_id(),
        name=script_name,
        namespace=namespace,
        main_module=upload.main_module,
        modules=upload.modules,
        bindings=bindings,
        compatibility_date=upload.metadata.compatibility_date,
        compatibility_flags=upload.metadata.compatibility_flags,
        etag=digest.hexdigest(),
        created_on=previous.created_on if previous is not None else now,
        modified_on=now,
        secret_ledger_ids=previous.secret_ledger_ids if previous is not None else {},
    )
    scripts[script_name] = script
    details = {
        "namespace": namespace,
        "main_module": script.main_module,
        "modules": sorted(script.modules),
        "bindings": [_ledger_binding(b) for b in script.bindings],
        "compatibility_date": script.compatibility_date,
    }
    if previous is None:
        _ledger_created(
            call.state, "script", script.id, account_id=account_id, name=script_name, **details
        )
    else:
        _ledger_updated(call.state, script.id, **details)
    _sync_secret_ledger(call.state, account_id, script)
    return {**_script_view(script), "startup_time_ms": 0, "entry_point": script.main_module}


def _remove_script(
    state: SandboxState, account: Account, scripts: dict[str, Script], name: str
) -> None:
    """Delete a script, its secrets and, when it was the last of its name, its cron triggers."""
    script = scripts.pop(name)
    for entry_id in script.secret_ledger_ids.values():
        _ledger_deleted(state, entry_id)
    script.secret_ledger_ids.clear()
    _ledger_deleted(state, script.id)
    if not account.scripts_named(name):
        for schedule in account.schedules.pop(name, []):
            _ledger_deleted(state, schedule.ledger_id)


def _script(account: Account, namespace: str | None, name: str) -> Script:
    scripts = _namespace(account, namespace).scripts if namespace is not None else account.scripts
    script = scripts.get(name)
    if script is None:
        raise CloudflareError(
            404, CODE_SCRIPT_NOT_FOUND, "This Worker does not exist on your account."
        )
    return script


def _delete_script(call: Call, account_id: str, namespace: str | None, name: str) -> None:
    account = call.store.account(account_id)
    script = _script(account, namespace, name)
    scripts = _namespace(account, namespace).scripts if namespace is not None else account.scripts
    _remove_script(call.state, account, scripts, script.name)


_DISPATCH_SCRIPT = "/accounts/{account_id}/workers/dispatch/namespaces/{namespace}/scripts/{name}"


@router.put(_DISPATCH_SCRIPT)
async def upload_dispatch_script(
    request: Request, account_id: str, namespace: str, name: str
) -> Response:
    return await _answer(request, lambda call: _upload_script(call, account_id, namespace, name))


@router.get(_DISPATCH_SCRIPT)
async def get_dispatch_script(
    request: Request, account_id: str, namespace: str, name: str
) -> Response:
    def script(call: Call) -> dict[str, Any]:
        found = _script(call.store.account(account_id), namespace, name)
        return {
            "created_on": found.created_on,
            "modified_on": found.modified_on,
            "dispatch_namespace": namespace,
            "script": _script_view(found),
        }

    return await _answer(request, script)


@router.delete(_DISPATCH_SCRIPT)
async def delete_dispatch_script(
    request: Request, account_id: str, namespace: str, name: str
) -> Response:
    """``?force=true`` is accepted (no other Worker can reference a sandbox script)."""
    return await _answer(request, lambda call: _delete_script(call, account_id, namespace, name))


@router.get(_DISPATCH_SCRIPT + "/bindings")
async def get_dispatch_script_bindings(
    request: Request, account_id: str, namespace: str, name: str
) -> Response:
    def bindings(call: Call) -> Listing:
        found = _script(call.store.account(account_id), namespace, name)
        return Listing.whole([_public_binding(b) for b in found.bindings])

    return await _answer(request, bindings)


@router.put("/accounts/{account_id}/workers/scripts/{name}")
async def upload_plain_script(request: Request, account_id: str, name: str) -> Response:
    return await _answer(request, lambda call: _upload_script(call, account_id, None, name))


@router.delete("/accounts/{account_id}/workers/scripts/{name}")
async def delete_plain_script(request: Request, account_id: str, name: str) -> Response:
    return await _answer(request, lambda call: _delete_script(call, account_id, None, name))


# ------------------------------------------------------------ Workers: secrets


class SecretIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    text: str
    type: Literal["secret_text"]


def _secret_view(binding: dict[str, Any]) -> dict[str, Any]:
    return {"name": binding["name"], "type": binding["type"]}


def _secret_name(call: Call, raw_name: str) -> str:
    return unquote(raw_name) if _query_flag(call.query, "url_encoded") else raw_name


def _find_secret(script: Script, name: str) -> dict[str, Any]:
    secret = next(
        (b for b in script.bindings if b["name"] == name and b["type"] in SECRET_BINDING_TYPES),
        None,
    )
    if secret is None:
        raise CloudflareError(
            404, CODE_SECRET_NOT_FOUND, f"Secret '{name}' was not found on this Worker."
        )
    return secret


def _put_secret(call: Call, account_id: str, namespace: str, script_name: str) -> dict[str, Any]:
    script = _script(call.store.account(account_id), namespace, script_name)
    secret_in = call.parse(SecretIn)
    clash = next((b for b in script.bindings if b["name"] == secret_in.name), None)
    if clash is not None and clash["type"] not in SECRET_BINDING_TYPES:
        raise _binding_error(
            f"Binding name '{secret_in.name}' is already in use by a {clash['type']} binding."
        )
    secret = {"type": "secret_text", "name": secret_in.name, "text": secret_in.text}
    script.bindings = [b for b in script.bindings if b["name"] != secret_in.name] + [secret]
    script.modified_on = _now()
    _sync_secret_ledger(call.state, account_id, script)
    return _secret_view(secret)


def _delete_secret(
    call: Call, account_id: str, namespace: str, script_name: str, secret_name: str
) -> None:
    script = _script(call.store.account(account_id), namespace, script_name)
    name = _secret_name(call, secret_name)
    _find_secret(script, name)
    script.bindings = [b for b in script.bindings if b["name"] != name]
    script.modified_on = _now()
    _sync_secret_ledger(call.state, account_id, script)


_SECRETS = _DISPATCH_SCRIPT + "/secrets"


@router.put(_SECRETS)
async def put_secret(request: Request, account_id: str, namespace: str, name: str) -> Response:
    return await _answer(request, lambda call: _put_secret(call, account_id, namespace, name))


@router.get(_SECRETS)
async def list_secrets(request: Request, account_id: str, namespace: str, name: str) -> Response:
    """Names and types only, never the text."""

    def secrets_of(call: Call) -> Listing:
        script = _script(call.store.account(account_id), namespace, name)
        return Listing.whole(
            [_secret_view(b) for b in script.bindings if b["type"] in SECRET_BINDING_TYPES]
        )

    return await _answer(request, secrets_of)


@router.get(_SECRETS + "/{secret_name}")
async def get_secret(
    request: Request, account_id: str, namespace: str, name: str, secret_name: str
) -> Response:
    def secret(call: Call) -> dict[str, Any]:
        script = _script(call.store.account(account_id), namespace, name)
        return _secret_view(_find_secret(script, _secret_name(call, secret_name)))

    return await _answer(request, secret)


@router.delete(_SECRETS + "/{secret_name}")
async def delete_secret(
    request: Request, account_id: str, namespace: str, name: str, secret_name: str
) -> Response:
    return await _answer(
        request, lambda call: _delete_secret(call, account_id, namespace, name, secret_name)
    )


# ------------------------------------------------------- Workers: cron triggers


class ScheduleIn(BaseModel):
    cron: str


class SchedulesIn(BaseModel):
    schedules: list[ScheduleIn]


def _check_cron(expression: str) -> None:
    fields = expression.split()
    if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
        raise CloudflareError(
            400,
            CODE_INVALID_CRON,
            f"Invalid cron expression {expression!r}: use five fields "
            "(minute hour day-of-month month day-of-week).",
        )


def _schedules_view(schedules: list[Schedule]) -> dict[str, Any]:
    return {
        "schedules": [
            {"cron": s.cron, "created_on": s.created_on, "modified_on": s.modified_on}
            for s in schedules
        ]
    }


def _script_anywhere(account: Account, script_name: str) -> Script:
    found = account.scripts_named(script_name)
    if not found:
        raise CloudflareError(
            404, CODE_SCRIPT_NOT_FOUND, "This Worker does not exist on your account."
        )
    return found[0]


def _put_schedules(call: Call, account_id: str, script_name: str) -> dict[str, Any]:
    account = call.store.account(account_id)
    script = _script_anywhere(account, script_name)
    wanted = _validated(SchedulesIn, {"schedules": call.json()}, CODE_MALFORMED).schedules
    crons = list(dict.fromkeys(" ".join(s.cron.split()) for s in wanted))
    for cron in crons:
        _check_cron(cron)
    existing = {s.cron: s for s in account.schedules.get(script_name, [])}
    now = _now()
    schedules = []
    for cron in crons:
        schedule = existing.pop(cron, None)
        if schedule is None:
            schedule = Schedule(ledger_id=_hex_id(), cron=cron, created_on=now, modified_on=now)
            _ledger_created(
                call.state,
                "cron",
                schedule.ledger_id,
                account_id=account_id,
                name=cron,
                script=script_name,
                namespace=script.namespace,
            )
        schedules.append(schedule)
    for gone in existing.values():
        _ledger_deleted(call.state, gone.ledger_id)
    if schedules:
        account.schedules[script_name] = schedules
    else:
        account.schedules.pop(script_name, None)
    return _schedules_view(schedules)


_SCHEDULES = "/accounts/{account_id}/workers/scripts/{name}/schedules"


@router.put(_SCHEDULES)
async def put_schedules(request: Request, account_id: str, name: str) -> Response:
    """The body is the whole list ``[{"cron"}]``; ``[]`` deletes every trigger."""
    return await _answer(request, lambda call: _put_schedules(call, account_id, name))


@router.get(_SCHEDULES)
async def get_schedules(request: Request, account_id: str, name: str) -> Response:
    def schedules(call: Call) -> dict[str, Any]:
        account = call.store.account(account_id)
        _script_anywhere(account, name)
        return _schedules_view(account.schedules.get(name, []))

    return await _answer(request, schedules)


# ------------------------------------------------------------------------- D1


class D1CreateIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    primary_location_hint: str | None = None
    jurisdiction: str | None = None


SqlParam = str | int | float | bool | None


class D1StatementIn(BaseModel):
    sql: str
    params: list[SqlParam] = Field(default_factory=list)


class D1QueryIn(BaseModel):
    sql: str | None = None
    params: list[SqlParam] = Field(default_factory=list)
    batch: list[D1StatementIn] | None = None


def _d1_size(database: D1Database) -> int:
    page_count = database.connection.execute("PRAGMA page_count").fetchone()[0]
    page_size = database.connection.execute("PRAGMA page_size").fetchone()[0]
    return int(page_count) * int(page_size)


def _d1_tables(database: D1Database) -> list[str]:
    rows = database.connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE '_cf_%' ORDER BY name"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _d1_summary(database: D1Database) -> dict[str, Any]:
    return {
        "uuid": database.uuid,
        "name": database.name,
        "created_at": database.created_at,
        "version": "production",
    }


def _d1_view(database: D1Database) -> dict[str, Any]:
    return {
        **_d1_summary(database),
        "num_tables": len(_d1_tables(database)),
        "file_size": _d1_size(database),
        "read_replication": {"mode": "disabled"},
    }


def _database(account: Account, database_id: str) -> D1Database:
    database = account.d1.get(database_id)
    if database is None:
        raise CloudflareError(
            404, CODE_D1_NOT_FOUND, f"The database {database_id} could not be found."
        )
    return database


def _create_d1(call: Call, account_id: str) -> dict[str, Any]:
    name = call.parse(D1CreateIn, CODE_D1_INVALID).name
    if not D1_NAME.match(name):
        raise CloudflareError(
            400, CODE_D1_INVALID, "A database name is 1-64 letters, digits, '-' or '_'."
        )
    account = call.store.account(account_id)
    if any(db.name == name for db in account.d1.values()):
        raise CloudflareError(400, CODE_D1_EXISTS, "A database with that name already exists")
    connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    database = D1Database(
        uuid=str(uuid.uuid4()), name=name, created_at=_now(), connection=connection
    )
    account.d1[database.uuid] = database
    _ledger_created(call.state, "d1_database", database.uuid, account_id=account_id, name=name)
    return _d1_view(database)


def _delete_d1(call: Call, account_id: str, database_id: str) -> None:
    account = call.store.account(account_id)
    database = _database(account, database_id)
    del account.d1[database_id]
    database.connection.close()
    _ledger_deleted(call.state, database.uuid)


_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _blank_sql(sql: str) -> bool:
    return not _SQL_COMMENT.sub("", sql).strip(" \t\r\n;")


def split_statements(sql: str) -> list[str]:
    """``sql`` cut into statements at the semicolons SQLite sees (not those in strings or
    triggers), leaving out empty and comment-only ones."""
    statements: list[str] = []
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if not _blank_sql(buffer):
                statements.append(buffer.strip())
            buffer = ""
    rest = buffer[:-1].strip()
    if not _blank_sql(rest):
        statements.append(rest)  # incomplete: SQLite will say what is wrong
    return statements


def _d1_value(value: Any) -> Any:
    return list(value) if isinstance(value, bytes) else value


_WRITING_KEYWORDS = ("CREATE", "DROP", "ALTER", "INSERT", "UPDATE", "DELETE", "REPLACE")


def _run_statement(database: D1Database, sql: str, params: list[SqlParam]) -> dict[str, Any]:
    connection = database.connection
    started = time.perf_counter()
    before = connection.total_changes
    cursor = connection.execute(sql, params)
    rows = cursor.fetchall()
    columns = [d[0] for d in cursor.description or ()]
    changes = connection.total_changes - before
    duration_ms = (time.perf_counter() - started) * 1000
    writes = sql.lstrip().upper().startswith(_WRITING_KEYWORDS)
    return {
        "results": [dict(zip(columns, (_d1_value(v) for v in row), strict=True)) for row in rows],
        "success": True,
        "meta": {
            "served_by": "v3-sandbox",
            "served_by_region": "OC",
            "served_by_primary": True,
            "duration": duration_ms,
            "changes": changes,
            "last_row_id": cursor.lastrowid or 0,
            "changed_db": changes > 0 or writes,
            "size_after": _d1_size(database),
            "rows_read": len(rows),
            "rows_written": changes,
            "timings": {"sql_duration_ms": duration_ms},
        },
    }


def _statements(query: D1QueryIn) -> list[tuple[str, list[SqlParam]]]:
    if query.batch is not None:
        return [(s.sql, s.params) for s in query.batch]
    if query.sql is None:
        raise CloudflareError(400, CODE_D1_INVALID, "The query needs 'sql' or 'batch'.")
    statements = split_statements(query.sql)
    if query.params and len(statements) > 1:
        raise CloudflareError(
            400, CODE_D1_INVALID, "Parameters can be bound to a single statement only."
        )
    return [(statement, query.params) for statement in statements]


def execute_d1(database: D1Database, query: D1QueryIn) -> list[dict[str, Any]]:
    """Run every statement of ``query`` in one transaction; any error rolls them all back."""
    statements = _statements(query)
    if not statements:
        raise CloudflareError(400, CODE_D1_INVALID, "No SQL statements detected.")
    connection = database.connection
    connection.execute("BEGIN")
    try:
        results = [_run_statement(database, sql, params) for sql, params in statements]
    except (sqlite3.Error, sqlite3.Warning) as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        error_name = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
        raise CloudflareError(400, CODE_D1_QUERY, f"{exc}: {error_name}") from None
    if connection.in_transaction:  # the SQL may have ended it (D1 itself refuses that)
        connection.execute("COMMIT")
    return results


@router.post("/accounts/{account_id}/d1/database")
async def create_d1(request: Request, account_id: str) -> Response:
    return await _answer(request, lambda call: _create_d1(call, account_id))


@router.get("/accounts/{account_id}/d1/database")
async def list_d1(request: Request, account_id: str) -> Response:
    """``?name=`` keeps the databases whose name contains it; ``?page=&per_page=``."""

    def databases(call: Call) -> Listing:
        wanted = call.query.get("name")
        found = [
            _d1_summary(db)
            for db in call.store.account(account_id).d1.values()
            if not wanted or wanted in db.name
        ]
        return Listing.page(found, call.query, default_per_page=1000)

    return await _answer(request, databases)


@router.get("/accounts/{account_id}/d1/database/{database_id}")
async def get_d1(request: Request, account_id: str, database_id: str) -> Response:
    return await _answer(
        request, lambda call: _d1_view(_database(call.store.account(account_id), database_id))
    )


@router.delete("/accounts/{account_id}/d1/database/{database_id}")
async def delete_d1(request: Request, account_id: str, database_id: str) -> Response:
    return await _answer(request, lambda call: _delete_d1(call, account_id, database_id))


@router.post("/accounts/{account_id}/d1/database/{database_id}/query")
async def query_d1(request: Request, account_id: str, database_id: str) -> Response:
    def query(call: Call) -> Listing:
        database = _database(call.store.account(account_id), database_id)
        return Listing.whole(execute_d1(database, call.parse(D1QueryIn, CODE_D1_INVALID)))

    return await _answer(request, query)


# ------------------------------------------------------------------------- R2


class BucketIn(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    location_hint: str | None = Field(default=None, alias="locationHint")
    storage_class: str | None = Field(default=None, alias="storageClass")


class CorsAllowedIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    methods: list[str] = Field(min_length=1)
    origins: list[str] = Field(min_length=1)
    headers: list[str] | None = None


class CorsRuleIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    allowed: CorsAllowedIn
    id: str | None = None


class CorsIn(BaseModel):
    rules: list[CorsRuleIn] = Field(default_factory=list)


def _bucket_view(bucket: Bucket) -> dict[str, Any]:
    return {
        "name": bucket.name,
        "creation_date": bucket.creation_date,
        "location": bucket.location,
        "storage_class": bucket.storage_class,
        "jurisdiction": "default",
    }


def _bucket(account: Account, name: str) -> Bucket:
    bucket = account.buckets.get(name)
    if bucket is None:
        raise CloudflareError(404, CODE_R2_NOT_FOUND, "The specified bucket does not exist.")
    return bucket


def _create_bucket(call: Call, account_id: str) -> dict[str, Any]:
    bucket_in = call.parse(BucketIn, CODE_R2_INVALID_NAME)
    if not R2_BUCKET_NAME.match(bucket_in.name):
        raise CloudflareError(
            400,
            CODE_R2_INVALID_NAME,
            "The specified bucket name is not valid: 3-63 lowercase letters, digits and "
            "hyphens, starting and ending with a letter or digit.",
        )
    account = call.store.account(account_id)
    if bucket_in.name in account.buckets:
        raise CloudflareError(
            409,
            CODE_R2_EXISTS,
            "The bucket you tried to create already exists, and you own it.",
        )
    bucket = Bucket(
        ledger_id=_hex_id(),
        name=bucket_in.name,
        creation_date=_now(),
        location=(bucket_in.location_hint or "oc").lower(),
        storage_class=bucket_in.storage_class or "Standard",
    )
    account.buckets[bucket.name] = bucket
    _ledger_created(
        call.state, "r2_bucket", bucket.ledger_id, account_id=account_id, name=bucket.name
    )
    return _bucket_view(bucket)


def _list_buckets(call: Call, account_id: str) -> Response:
    """``{"buckets": [...]}`` by name; ``name_contains``, ``start_after``, ``direction``,
    ``per_page`` (default 20) and an opaque ``cursor`` in ``result_info``."""
    query = call.query
    buckets = sorted(call.store.account(account_id).buckets.values(), key=lambda b: b.name)
    if query.get("direction") == "desc":
        buckets.reverse()
    if contains := query.get("name_contains"):
        buckets = [b for b in buckets if contains in b.name]
    after = query.get("cursor") or query.get("start_after")
    if after:
        descending = query.get("direction") == "desc"
        buckets = [b for b in buckets if (b.name < after if descending else b.name > after)]
    per_page = _positive_int(query.get("per_page"), 20, "per_page")
    chosen = buckets[:per_page]
    cursor = chosen[-1].name if len(buckets) > per_page else ""
    return _envelope(
        {"buckets": [_bucket_view(b) for b in chosen]},
        result_info={"cursor": cursor, "per_page": per_page},
    )


def _delete_bucket(call: Call, account_id: str, name: str) -> None:
    account = call.store.account(account_id)
    bucket = _bucket(account, name)
    if bucket.cors is not None:
        _ledger_deleted(call.state, bucket.cors.ledger_id)
    del account.buckets[name]
    _ledger_deleted(call.state, bucket.ledger_id)


def _put_cors(call: Call, account_id: str, name: str) -> dict[str, Any]:
    bucket = _bucket(call.store.account(account_id), name)
    cors_in = call.parse(CorsIn, CODE_R2_INVALID_CORS)
    for rule in cors_in.rules:
        bad = sorted(set(rule.allowed.methods) - CORS_METHODS)
        if bad:
            raise CloudflareError(
                400, CODE_R2_INVALID_CORS, f"Unsupported CORS method(s): {', '.join(bad)}."
            )
    rules = [rule.model_dump(exclude_none=True) for rule in cors_in.rules]
    origins = sorted({o for rule in cors_in.rules for o in rule.allowed.origins})
    if bucket.cors is None:
        bucket.cors = BucketCors(ledger_id=_hex_id(), rules=rules)
        _ledger_created(
            call.state,
            "r2_cors",
            bucket.cors.ledger_id,
            account_id=account_id,
            name=name,
            bucket=name,
            origins=origins,
        )
    else:
        bucket.cors.rules = rules
        _ledger_updated(call.state, bucket.cors.ledger_id, origins=origins)
    return {}


def _bucket_cors(call: Call, account_id: str, name: str) -> BucketCors:
    bucket = _bucket(call.store.account(account_id), name)
    if bucket.cors is None:
        raise CloudflareError(404, CODE_R2_NO_CORS, "The CORS configuration does not exist.")
    return bucket.cors


def _delete_cors(call: Call, account_id: str, name: str) -> dict[str, Any]:
    bucket = _bucket(call.store.account(account_id), name)
    cors = _bucket_cors(call, account_id, name)
    bucket.cors = None
    _ledger_deleted(call.state, cors.ledger_id)
    return {}


@router.post("/accounts/{account_id}/r2/buckets")
async def create_bucket(request: Request, account_id: str) -> Response:
    return await _answer(request, lambda call: _create_bucket(call, account_id))


@router.get("/accounts/{account_id}/r2/buckets")
async def list_buckets(request: Request, account_id: str) -> Response:
    return await _answer(request, lambda call: _list_buckets(call, account_id))


@router.get("/accounts/{account_id}/r2/buckets/{name}")
async def get_bucket(request: Request, account_id: str, name: str) -> Response:
    return await _answer(
        request, lambda call: _bucket_view(_bucket(call.store.account(account_id), name))
    )


@router.delete("/accounts/{account_id}/r2/buckets/{name}")
async def delete_bucket(request: Request, account_id: str, name: str) -> Response:
    """Deleting a bucket deletes its CORS configuration."""
    return await _answer(request, lambda call: _delete_bucket(call, account_id, name))


@router.put("/accounts/{account_id}/r2/buckets/{name}/cors")
async def put_cors(request: Request, account_id: str, name: str) -> Response:
    return await _answer(request, lambda call: _put_cors(call, account_id, name))


@router.get("/accounts/{account_id}/r2/buckets/{name}/cors")
async def get_cors(request: Request, account_id: str, name: str) -> Response:
    return await _answer(
        request, lambda call: {"rules": _bucket_cors(call, account_id, name).rules}
    )


@router.delete("/accounts/{account_id}/r2/buckets/{name}/cors")
async def delete_cors(request: Request, account_id: str, name: str) -> Response:
    return await _answer(request, lambda call: _delete_cors(call, account_id, name))


# ----------------------------------------------------- Workers custom domains


class DomainIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    hostname: str = Field(min_length=1)
    service: str = Field(min_length=1)
    zone_id: str | None = None
    zone_name: str | None = None
    environment: str = "production"
    override_existing_origin: bool = False


def _domain_view(domain: CustomDomain) -> dict[str, Any]:
    return {
        "id": domain.id,
        "cert_id": domain.cert_id,
        "environment": domain.environment,
        "hostname": domain.hostname,
        "service": domain.service,
        "zone_id": domain.zone_id,
        "zone_name": domain.zone_name,
    }


def _zone_of(domain_in: DomainIn, hostname: str) -> tuple[str, str]:
    """(zone id, zone name): as given, else the hostname's last two labels."""
    zone_name = domain_in.zone_name or ".".join(hostname.split(".")[-2:])
    zone_id = domain_in.zone_id or hashlib.sha256(zone_name.encode()).hexdigest()[:32]
    return zone_id, zone_name


def _dns_names(store: CloudflareStore, zone_id: str) -> set[str]:
    return {record["name"] for record in store.zones.get(zone_id, {}).values()}


def _remove_domain(state: SandboxState, account: Account, domain: CustomDomain) -> None:
    del account.domains[domain.id]
    _ledger_deleted(state, domain.id)


def _put_domain(call: Call, account_id: str) -> dict[str, Any]:
    domain_in = call.parse(DomainIn)
    hostname = domain_in.hostname.strip().rstrip(".").lower()
    if not HOSTNAME.match(hostname):
        raise CloudflareError(
            400,
            CODE_DOMAIN_INVALID,
            f"Invalid hostname {domain_in.hostname!r}: a custom domain is a plain hostname "
            "(no scheme, path or wildcard).",
        )
    account = call.store.account(account_id)
    _script_anywhere(account, domain_in.service)  # the Worker must exist
    zone_id, zone_name = _zone_of(domain_in, hostname)
    existing = next((d for d in account.domains.values() if d.hostname == hostname), None)
    if existing is not None and existing.service == domain_in.service:
        return _domain_view(existing)
    if existing is not None and not domain_in.override_existing_origin:
        raise CloudflareError(
            409,
            CODE_DOMAIN_IN_USE,
            f"Hostname '{hostname}' already in use by other custom domain. Either delete it, "
            "try a different hostname, or use the option 'override_existing_origin' to "
            "override.",
        )
    if hostname in _dns_names(call.store, zone_id):
        raise CloudflareError(
            409,
            CODE_DOMAIN_HAS_DNS,
            f"Hostname '{hostname}' already has externally managed DNS records (A, CNAME, "
            "etc). Delete them first or try a different hostname.",
        )
    if existing is not None:
        _remove_domain(call.state, account, existing)
    domain = CustomDomain(
        id=_hex_id(),
        hostname=hostname,
        service=domain_in.service,
        zone_id=zone_id,
        zone_name=zone_name,
        environment=domain_in.environment,
        cert_id=_hex_id(),
    )
    account.domains[domain.id] = domain
    _ledger_created(
        call.state,
        "custom_domain",
        domain.id,
        account_id=account_id,
        name=hostname,
        script=domain.service,
        zone_id=zone_id,
    )
    return _domain_view(domain)


def _domain(account: Account, domain_id: str) -> CustomDomain:
    domain = account.domains.get(domain_id)
    if domain is None:
        raise CloudflareError(404, CODE_DOMAIN_NOT_FOUND, f"Custom domain {domain_id} not found.")
    return domain


def _list_domains(call: Call, account_id: str) -> Listing:
    filters = {
        key: call.query[key]
        for key in ("hostname", "service", "zone_id", "zone_name", "environment")
        if call.query.get(key)
    }
    found = [
        view
        for view in map(_domain_view, call.store.account(account_id).domains.values())
        if all(str(view[key]).lower() == value.lower() for key, value in filters.items())
    ]
    return Listing.whole(found)


@router.put("/accounts/{account_id}/workers/domains")
async def put_domain(request: Request, account_id: str) -> Response:
    return await _answer(request, lambda call: _put_domain(call, account_id))


@router.get("/accounts/{account_id}/workers/domains")
async def list_domains(request: Request, account_id: str) -> Response:
    """Filters: ``hostname``, ``service``, ``zone_id``, ``zone_name``, ``environment``."""
    return await _answer(request, lambda call: _list_domains(call, account_id))


@router.get("/accounts/{account_id}/workers/domains/{domain_id}")
async def get_domain(request: Request, account_id: str, domain_id: str) -> Response:
    return await _answer(
        request, lambda call: _domain_view(_domain(call.store.account(account_id), domain_id))
    )


@router.delete("/accounts/{account_id}/workers/domains/{domain_id}")
async def delete_domain(request: Request, account_id: str, domain_id: str) -> Response:
    def delete(call: Call) -> None:
        account = call.store.account(account_id)
        _remove_domain(call.state, account, _domain(account, domain_id))

    return await _answer(request, delete)


# ---------------------------------------------------------------- DNS records


class DnsRecordIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    name: str = Field(min_length=1)
    content: str | None = None
    proxied: bool = False
    ttl: int = 1
    comment: str | None = None
    tags: list[str] = Field(default_factory=list)
    priority: int | None = None


def _dns_invalid(message: str) -> CloudflareError:
    return CloudflareError(400, CODE_DNS_INVALID, message)


def _check_dns_content(record_type: str, content: str | None) -> None:
    if record_type in ("A", "AAAA", "CNAME", "TXT", "NS", "PTR", "MX") and not content:
        raise _dns_invalid(f"A {record_type} record needs content.")
    if record_type == "A" or record_type == "AAAA":
        try:
            address = ipaddress.ip_address(content or "")
        except ValueError:
            address = None
        version = 4 if record_type == "A" else 6
        if address is None or address.version != version:
            raise _dns_invalid(
                f"Content for {record_type} record is invalid. Must be a valid IPv{version} "
                "address."
            )


def _dns_conflict(zone: dict[str, dict[str, Any]], new: dict[str, Any]) -> None:
    """A CNAME shares its name with no other record (and an identical record is refused)."""
    same_name = [r for r in zone.values() if r["name"] == new["name"]]
    if any(r["type"] == new["type"] and r["content"] == new["content"] for r in same_name):
        raise CloudflareError(400, CODE_DNS_IDENTICAL, "An identical record already exists.")
    if any(r["type"] == "CNAME" for r in same_name):
        raise CloudflareError(
            400, CODE_DNS_CNAME_EXISTS, "A CNAME record with that host already exists."
        )
    if new["type"] == "CNAME" and same_name:
        raise CloudflareError(
            400, CODE_DNS_NAME_TAKEN, "An A, AAAA, or CNAME record with that host already exists."
        )


def _create_dns_record(call: Call, zone_id: str) -> dict[str, Any]:
    record_in = call.parse(DnsRecordIn, CODE_DNS_INVALID)
    record_type = record_in.type.upper()
    if record_type not in DNS_TYPES:
        raise _dns_invalid(f"Unsupported DNS record type {record_in.type!r}.")
    _check_dns_content(record_type, record_in.content)
    if record_in.proxied and record_type not in PROXIABLE_TYPES:
        raise _dns_invalid(f"A {record_type} record cannot be proxied.")
    if record_in.ttl != 1 and not 30 <= record_in.ttl <= 86_400:
        raise _dns_invalid("Invalid TTL. Must be between 30 and 86400 seconds, or 1 for Automatic.")
    name = record_in.name.strip().rstrip(".").lower()
    for account in call.store.accounts.values():
        if record_type in PROXIABLE_TYPES and any(
            d.hostname == name and d.zone_id == zone_id for d in account.domains.values()
        ):
            raise CloudflareError(
                400,
                CODE_DNS_NAME_TAKEN,
                "An A, AAAA, or CNAME record with that host already exists (a Workers "
                "custom domain).",
            )
    now = _now()
    record_id = _hex_id()
    record: dict[str, Any] = {
        "id": record_id,
        "zone_id": zone_id,
        "name": name,
        "type": record_type,
        "content": record_in.content,
        "proxiable": record_type in PROXIABLE_TYPES,
        "proxied": record_in.proxied,
        "ttl": 1 if record_in.proxied else record_in.ttl,
        "settings": {},
        "meta": {},
        "comment": record_in.comment,
        "tags": record_in.tags,
        "created_on": now,
        "modified_on": now,
    }
    if record_in.priority is not None:
        record["priority"] = record_in.priority
    zone = call.store.zone(zone_id)
    _dns_conflict(zone, record)
    zone[record_id] = record
    _ledger_created(
        call.state,
        "dns_record",
        record_id,
        account_id=None,
        name=name,
        zone_id=zone_id,
        record_type=record_type,
        content=record_in.content,
    )
    return record


def _text_matches(value: str | None, query: QueryParams, key: str) -> bool | None:
    """Whether ``value`` passes the ``key`` / ``key.exact|contains|startswith|endswith``
    filters of ``query`` (None: no such filter)."""
    tests: dict[str, Callable[[str, str], bool]] = {
        "": lambda v, w: v == w,
        ".exact": lambda v, w: v == w,
        ".contains": lambda v, w: w in v,
        ".startswith": lambda v, w: v.startswith(w),
        ".endswith": lambda v, w: v.endswith(w),
    }
    outcomes = [
        test((value or "").lower(), wanted.lower().rstrip(".") if key == "name" else wanted.lower())
        for suffix, test in tests.items()
        if (wanted := query.get(key + suffix)) is not None
    ]
    return all(outcomes) if outcomes else None


def _record_matches(record: dict[str, Any], query: QueryParams) -> bool:
    outcomes = [
        _text_matches(record["name"], query, "name"),
        _text_matches(record["content"], query, "content"),
    ]
    if record_type := query.get("type"):
        outcomes.append(record["type"] == record_type.upper())
    if (proxied := _query_flag(query, "proxied")) is not None:
        outcomes.append(record["proxied"] == proxied)
    decided = [o for o in outcomes if o is not None]
    if not decided:
        return True
    return any(decided) if query.get("match") == "any" else all(decided)


def _list_dns_records(call: Call, zone_id: str) -> Listing:
    found = [r for r in call.store.zone(zone_id).values() if _record_matches(r, call.query)]
    order = call.query.get("order")
    if order in ("type", "name", "content", "ttl", "proxied"):
        found.sort(key=lambda r: str(r[order]), reverse=call.query.get("direction") == "desc")
    return Listing.page(found, call.query, default_per_page=100)


def _dns_record(store: CloudflareStore, zone_id: str, record_id: str) -> dict[str, Any]:
    record = store.zone(zone_id).get(record_id)
    if record is None:
        raise CloudflareError(404, CODE_DNS_NOT_FOUND, "Record does not exist.")
    return record


def _delete_dns_record(call: Call, zone_id: str, record_id: str) -> dict[str, str]:
    _dns_record(call.store, zone_id, record_id)
    del call.store.zone(zone_id)[record_id]
    _ledger_deleted(call.state, record_id)
    return {"id": record_id}


@router.post("/zones/{zone_id}/dns_records")
async def create_dns_record(request: Request, zone_id: str) -> Response:
    return await _answer(request, lambda call: _create_dns_record(call, zone_id))


@router.get("/zones/{zone_id}/dns_records")
async def list_dns_records(request: Request, zone_id: str) -> Response:
    """Filters ``name`` (or ``name.exact|contains|startswith|endswith``), ``content`` (the
    same), ``type``, ``proxied``, ``match=any|all``; ``page``, ``per_page`` (100)."""
    return await _answer(request, lambda call: _list_dns_records(call, zone_id))


@router.get("/zones/{zone_id}/dns_records/{record_id}")
async def get_dns_record(request: Request, zone_id: str, record_id: str) -> Response:
    return await _answer(request, lambda call: _dns_record(call.store, zone_id, record_id))


@router.delete("/zones/{zone_id}/dns_records/{record_id}")
async def delete_dns_record(request: Request, zone_id: str, record_id: str) -> Response:
    return await _answer(request, lambda call: _delete_dns_record(call, zone_id, record_id))


# -------------------------------------------------------------- unknown paths

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@router.api_route("/{path:path}", methods=_ALL_METHODS, include_in_schema=False)
async def unknown_cloudflare_path(request: Request, path: str) -> Response:
    """Cloudflare's answers for a path it has no route for, or a method it does not allow."""
    known_path = any(
        route.matches(request.scope)[0] == Match.PARTIAL
        for route in router.routes
        if getattr(route, "endpoint", None) is not unknown_cloudflare_path
    )
    if known_path:
        error = CloudflareError(
            405, CODE_METHOD_NOT_ALLOWED, f"Method {request.method} not allowed for /{path}."
        )
    else:
        error = CloudflareError(
            404,
            CODE_NO_ROUTE,
            f"Could not route to /{path}, perhaps your object identifier is invalid?",
        )
    return error.response()


# ----------------------------------------------------------- control routes


def _live_script(account: Account, name: str) -> Script | None:
    found = account.scripts_named(name)
    return found[0] if found else None


def _host(state: SandboxState, hostname: str, path: str) -> JSONResponse:
    store = state.store(CloudflareStore)
    wanted = hostname.rstrip(".").lower()
    for account in store.accounts.values():
        for domain in account.domains.values():
            script = _live_script(account, domain.service) if domain.hostname == wanted else None
            if script is not None:
                return JSONResponse(
                    {
                        "hostname": domain.hostname,
                        "account_id": account.id,
                        "script": script.name,
                        "namespace": script.namespace,
                        "path": "/" + path,
                        "main_module": script.main_module,
                        "bindings": [b["name"] for b in script.bindings],
                    }
                )
    return JSONResponse(
        {"detail": f"No custom domain {wanted} pointing at an uploaded Worker."}, status_code=404
    )


@control_router.get("/hosts/{hostname}")
async def get_host_root(hostname: str, state: StateDep) -> JSONResponse:
    return _host(state, hostname, "")


@control_router.get("/hosts/{hostname}/{path:path}")
async def get_host(hostname: str, path: str, state: StateDep) -> JSONResponse:
    """200 ``{"hostname", "account_id", "script", "namespace", "path", ...}`` when a custom
    domain with ``hostname`` points at an uploaded script (the post-deploy HTTP check), else 404."""
    return _host(state, hostname, path)


def _script_summary(script: Script) -> dict[str, Any]:
    return {
        "name": script.name,
        "id": script.id,
        "main_module": script.main_module,
        "modules": {
            name: {
                "content_type": module.content_type,
                "size": len(module.content),
                "sha256": hashlib.sha256(module.content).hexdigest(),
            }
            for name, module in script.modules.items()
        },
        "compatibility_date": script.compatibility_date,
        "bindings": [_ledger_binding(b) for b in script.bindings],
        "secrets": script.secret_names(),
    }


def _d1_account_summary(database: D1Database) -> dict[str, Any]:
    tables = {}
    for table in _d1_tables(database):
        quoted = '"' + table.replace('"', '""') + '"'
        count = database.connection.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]  # noqa: S608
        tables[table] = int(count)
    return {"uuid": database.uuid, "name": database.name, "tables": tables}


def _sorted_by_name(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: str(item["name"]))


@control_router.get("/accounts/{account_id}")
async def get_account(account_id: str, state: StateDep) -> dict[str, Any]:
    """The account's live resources: namespaces with their scripts (modules' content
    types, sizes and SHA-256, bindings, secret names), plain scripts, D1 databases
    (tables and row counts), R2 buckets (CORS rules), custom domains and cron
    triggers by script."""
    account = state.store(CloudflareStore).accounts.get(account_id) or Account(id=account_id)
    return {
        "account_id": account_id,
        "namespaces": _sorted_by_name(
            {
                "name": ns.name,
                "id": ns.id,
                "scripts": _sorted_by_name(map(_script_summary, ns.scripts.values())),
            }
            for ns in account.namespaces.values()
        ),
        "scripts": _sorted_by_name(map(_script_summary, account.scripts.values())),
        "d1_databases": _sorted_by_name(map(_d1_account_summary, account.d1.values())),
        "r2_buckets": _sorted_by_name(
            {"name": b.name, "cors_rules": b.cors.rules if b.cors else None}
            for b in account.buckets.values()
        ),
        "custom_domains": [_domain_view(d) for d in account.domains.values()],
        "schedules": {name: [s.cron for s in items] for name, items in account.schedules.items()},
    }


@control_router.get("/zones/{zone_id}")
async def get_zone(zone_id: str, state: StateDep) -> dict[str, Any]:
    """The zone's DNS records, as ``GET /zones/{zone_id}/dns_records`` shows them."""
    zone = state.store(CloudflareStore).zones.get(zone_id, {})
    return {"zone_id": zone_id, "dns_records": list(zone.values())}
