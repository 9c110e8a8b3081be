"""Request dependencies, as ``Annotated`` aliases the routes declare.

``SessionDep`` is one transaction per request: committed when the route
returns (before the answer is sent), rolled back when it raises.
Repositories flush but never commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from api.codec_auth import CODEC_PREFIX
from api.gate import Identity
from api.problems import Problem, forbidden, invalid, unauthorized
from api.resources import BackgroundDispatch, Resources
from api.schemas import FieldError
from db import api_keys, merchants
from db.models import Merchant
from db.outbox import ClientProvider
from db.session import transaction
from fulfil.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="Ops key or a merchant's API key")


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with transaction(resources.sessionmaker) as session:
        yield session


async def get_read_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """Autocommit: each statement sees committed data; no BEGIN/COMMIT round trips. For
    routes that only read, in one statement each or where statements need not agree."""
    async with resources.read_sessionmaker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]

# The cursor of a list: the id of the previous page's last item.
StartingAfter = Annotated[
    str | None,
    Query(
        max_length=40,
        pattern=r"^[A-Za-z0-9_]+$",
        description="The id of the previous page's last item: the page after it",
    ),
]


# scope="function": the commit happens before the response is sent, so a client
# never reads an answer whose writes could still be lost, and background tasks
# (outbox dispatch) run after the commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def get_dispatch(resources: ResourcesDep) -> BackgroundDispatch:
    return resources.dispatch


DispatchDep = Annotated[BackgroundDispatch, Depends(get_dispatch)]


def get_temporal(resources: ResourcesDep) -> ClientProvider:
    return resources.temporal


TemporalDep = Annotated[ClientProvider, Depends(get_temporal)]


# --- authentication ---------------------------------------------------------
# The key itself is checked by ``api.gate`` before the body is read; these load
# the merchant and enforce the role.


@dataclass(frozen=True)
class Caller:
    """Who is calling: ops, or a merchant's owner or staff key (the merchant row is loaded
    only by the routes that need it, :data:`CurrentMerchant`)."""

    identity: Identity

    @property
    def is_ops(self) -> bool:
        return self.identity.role == "ops"

    @property
    def role(self) -> str:
        return self.identity.role

    @property
    def merchant_id(self) -> str | None:
        """The tenant filter for reads: ``None`` for ops, who see every merchant's rows."""
        return None if self.is_ops else self.identity.merchant_id


async def get_caller(
    request: Request,
    resources: ResourcesDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """No database round trip: the gate identified the key (cached); a key's use is written
    at most once a minute per process (``last_used_at`` has that resolution anyway)."""
    identity: Identity | None = getattr(request.state, "identity", None)
    if identity is None:
        raise unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    request.state.role = identity.role
    if identity.role == "ops" or identity.merchant_id is None:
        return Caller(identity=identity)
    if identity.key_id is not None and resources.keys.due_for_touch(identity.key_id):
        async with resources.sessionmaker.begin() as session:
            await api_keys.touch(session, identity.key_id, datetime.now(UTC))
    request.state.merchant_id = identity.merchant_id
    return Caller(identity=identity)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


async def get_current_merchant(caller: CurrentCaller, session: SessionDep) -> Merchant:
    if caller.merchant_id is None:
        raise forbidden("This endpoint acts for one merchant: use that merchant's API key.")
    merchant = await merchants.get_merchant(session, caller.merchant_id)
    if merchant is None:
        raise unauthorized("Invalid API key.")
    return merchant


# Reads and cancels: an owner or a staff key.
CurrentMerchant = Annotated[Merchant, Depends(get_current_merchant)]


async def get_owner(caller: CurrentCaller, merchant: CurrentMerchant) -> Merchant:
    if caller.role != "owner":
        raise forbidden(
            "This needs an owner key: staff keys read orders and products and cancel orders."
        )
    return merchant


# Changes to prices, stock, discounts, webhook URL, keys and payouts: an owner key.
OwnerMerchant = Annotated[Merchant, Depends(get_owner)]


async def require_ops(caller: CurrentCaller) -> None:
    if not caller.is_ops:
        raise forbidden("This endpoint needs the ops key.")


OpsKey = Annotated[None, Depends(require_ops)]


# --- headers -----------------------------------------------------------------


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


async def get_idempotency_key(
    idempotency_key: Annotated[
        str,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e][\x20-\x7e]*$",
            description="Retrying with the same key and body returns the same order. "
            "Missing or invalid: 400.",
        ),
    ],
) -> str:
    key = idempotency_key.strip()
    if len(key) > 255 or not key.isprintable():
        raise Problem(
            HTTPStatus.BAD_REQUEST,
            "The Idempotency-Key header must be 1 to 255 printable characters.",
            slug="idempotency-key-invalid",
        )
    return key


IdempotencyKey = Annotated[str, Depends(get_idempotency_key)]


async def get_optional_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e][\x20-\x7e]*$",
            description="Optional: retrying with the same key and body answers with the same "
            "resource instead of making a second one.",
        ),
    ] = None,
) -> str | None:
    if idempotency_key is None:
        return None
    return await get_idempotency_key(idempotency_key)


OptionalIdempotencyKey = Annotated[str | None, Depends(get_optional_idempotency_key)]


# --- query strings -----------------------------------------------------------------


async def reject_unknown_query(request: Request) -> None:
    """A query parameter the operation does not declare is a typo, not a no-op: 422."""
    if not request.query_params or request.url.path.startswith(CODEC_PREFIX):
        # The codec speaks the Temporal UI's protocol, whose query parameters grow with the UI.
        return
    template = getattr(request.scope.get("route"), "path", None)
    operation = request.app.openapi()["paths"].get(template, {}).get(request.method.lower(), {})
    declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    unknown = [name for name in request.query_params if name not in declared]
    if unknown:
        raise invalid(
            [
                FieldError(field=name or "(empty name)", message="unknown query parameter")
                for name in unknown
            ],
            detail=f"Unknown query parameters: {', '.join(repr(n) for n in unknown)}.",
        )
