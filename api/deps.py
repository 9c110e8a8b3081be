"""Request dependencies, as ``Annotated`` aliases the routes declare.

``SessionDep`` is one transaction per request: committed when the route
returns (before the answer is sent), rolled back when it raises.
Repositories flush but never commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from api.keys import hash_api_key, is_ops_key
from api.problems import Problem, forbidden, unauthorized
from api.resources import BackgroundDispatch, Resources
from db import merchants
from db.models import Merchant
from fulfil.outbox import ClientProvider
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
    async with resources.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


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


# --- authentication --------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who is calling: ops (``merchant is None``) or a merchant."""

    merchant: Merchant | None

    @property
    def is_ops(self) -> bool:
        return self.merchant is None

    @property
    def merchant_id(self) -> str | None:
        """The tenant filter for reads: ``None`` for ops, who see every merchant's rows."""
        return self.merchant.id if self.merchant is not None else None


async def get_caller(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    key = credentials.credentials
    if is_ops_key(key, settings.ops_api_key):
        request.state.role = "ops"
        return Caller(merchant=None)
    merchant = await merchants.get_merchant_by_api_key_hash(session, hash_api_key(key))
    if merchant is None:
        raise unauthorized("Invalid API key.")
    request.state.merchant_id = merchant.id
    return Caller(merchant=merchant)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


async def get_current_merchant(caller: CurrentCaller) -> Merchant:
    if caller.merchant is None:
        raise forbidden("This endpoint acts for one merchant: use that merchant's API key.")
    return caller.merchant


CurrentMerchant = Annotated[Merchant, Depends(get_current_merchant)]


async def require_ops(caller: CurrentCaller) -> None:
    if not caller.is_ops:
        raise forbidden("This endpoint needs the ops key.")


OpsKey = Annotated[None, Depends(require_ops)]


# --- headers -----------------------------------------------------------------


async def get_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Required. Retrying with the same key and body returns the same order.",
        ),
    ] = None,
) -> str:
    if idempotency_key is None or not idempotency_key.strip():
        raise Problem(
            HTTPStatus.BAD_REQUEST,
            "The Idempotency-Key header is required.",
            slug="idempotency-key-missing",
        )
    key = idempotency_key.strip()
    if len(key) > 255 or not key.isprintable():
        raise Problem(
            HTTPStatus.BAD_REQUEST,
            "The Idempotency-Key header must be 1 to 255 printable characters.",
            slug="idempotency-key-invalid",
        )
    return key


IdempotencyKey = Annotated[str, Depends(get_idempotency_key)]
