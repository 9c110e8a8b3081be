"""Merchants: created by ops; each merchant reads and changes its own settings and keys.

A merchant's ``webhook_url`` is checked when it is set (``fulfil.outbound``):
no credentials, https in production, and no private or loopback address unless
``WEBHOOK_URL_ALLOWLIST`` allows its prefix. Keys are shown once; a deleted
owner key keeps working for ``KEY_GRACE_SECONDS`` so a rotation can roll out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    CurrentMerchant,
    OpsKey,
    OwnerMerchant,
    ResourcesDep,
    SessionDep,
    SettingsDep,
)
from api.keys import display_prefix, hash_api_key, new_api_key, new_key_id, new_webhook_secret
from api.problems import conflict, invalid_field, not_found, problem_responses
from api.schemas import (
    KeyCreate,
    KeyCreated,
    KeyPublic,
    MerchantCreate,
    MerchantCreated,
    MerchantPublic,
    MerchantUpdate,
    WebhookEndpointPublic,
)
from db import api_keys, merchants
from db.models import ApiKey, Merchant
from fulfil.codec import KeyRing
from fulfil.ids import new_id
from fulfil.outbound import UrlRefused, check_destination
from fulfil.settings import Settings

router = APIRouter(
    prefix="/api/v1/merchants",
    tags=["merchants"],
    responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
)

KeyIdPath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
MerchantIdPath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


def webhook_endpoint(merchant: Merchant, now: datetime | None = None) -> WebhookEndpointPublic:
    now = now or datetime.now(UTC)
    parked = merchant.webhook_parked_until is not None and merchant.webhook_parked_until > now
    return WebhookEndpointPublic(
        status="parked" if parked else "failing" if merchant.webhook_failures else "ok",
        consecutive_failures=merchant.webhook_failures,
        parked_until=merchant.webhook_parked_until if parked else None,
        last_error=merchant.webhook_last_error,
    )


def merchant_public(merchant: Merchant) -> MerchantPublic:
    return MerchantPublic.model_validate(
        {
            "merchant_id": merchant.id,
            "name": merchant.name,
            "email": merchant.email,
            "stripe_account": merchant.stripe_account,
            "tiktok_shop_id": merchant.tiktok_shop_id,
            "ship_from": merchant.ship_from,
            "shipping_policy": merchant.shipping_policy,
            "webhook_url": merchant.webhook_url,
            "webhook_endpoint": webhook_endpoint(merchant),
            "created_at": merchant.created_at,
        }
    )


def key_public(key: ApiKey) -> KeyPublic:
    return KeyPublic.model_validate(
        {
            "key_id": key.id,
            "role": key.role,
            "prefix": key.prefix,
            "created_at": key.created_at,
            "last_used_at": key.last_used_at,
            "expires_at": key.expires_at,
        }
    )


async def checked_webhook_url(url: str | None, settings: Settings) -> str | None:
    """The URL if webhooks may go there (DNS checked now, and again at each delivery)."""
    if url is None:
        return None
    try:
        await check_destination(
            url,
            allowlist=settings.webhook_allowlist(),
            require_https=settings.env == "production",
            require_resolvable=False,
        )
    except UrlRefused as err:
        raise invalid_field("webhook_url", str(err)) from None
    return url


async def mint_key(session: AsyncSession, merchant_id: str, role: str) -> tuple[ApiKey, str]:
    api_key = new_api_key()
    key = await api_keys.create_key(
        session,
        key_id=new_key_id(),
        merchant_id=merchant_id,
        key_hash=hash_api_key(api_key),
        prefix=display_prefix(api_key),
        role=role,
    )
    return key, api_key


@router.post(
    "",
    status_code=HTTPStatus.CREATED,
    summary="Create a merchant (ops)",
    description="The API key (an owner key) and the webhook secret are shown in this answer only.",
    responses=problem_responses(HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def create_merchant(
    body: MerchantCreate, _ops: OpsKey, session: SessionDep, settings: SettingsDep, request: Request
) -> MerchantCreated:
    webhook_url = await checked_webhook_url(body.webhook_url, settings)
    webhook_secret = new_webhook_secret()
    merchant = await merchants.create_merchant(
        session,
        merchant_id=new_id("mer"),
        name=body.name,
        email=body.email,
        webhook_secret_sealed=KeyRing.parse(settings.codec_keys).seal_text(webhook_secret),
        webhook_url=webhook_url,
        stripe_account=body.stripe_account,
        tiktok_shop_id=body.tiktok_shop_id,
        ship_from=body.ship_from.model_dump(mode="json") if body.ship_from else None,
        shipping_policy=(
            body.shipping_policy.model_dump(mode="json") if body.shipping_policy else None
        ),
    )
    if merchant is None:
        raise conflict(
            "merchant-exists",
            "Another merchant already has this TikTok shop.",
        )
    _, api_key = await mint_key(session, merchant.id, "owner")
    request.state.merchant_id = merchant.id
    return MerchantCreated(merchant_id=merchant.id, api_key=api_key, webhook_secret=webhook_secret)


@router.get(
    "/me",
    summary="The calling merchant, without its secrets, and its webhook endpoint's health",
)
async def get_me(merchant: CurrentMerchant) -> MerchantPublic:
    return merchant_public(merchant)


@router.patch(
    "/me",
    summary="Change webhook URL, ship-from address or shipping policy (owner)",
    description="Setting `webhook_url` (even to the same URL) also closes a parked endpoint's "
    "circuit breaker: deliveries try it again at once.",
    responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def update_me(
    body: MerchantUpdate, merchant: OwnerMerchant, session: SessionDep, settings: SettingsDep
) -> MerchantPublic:
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if name == "webhook_url":
            changes[name] = await checked_webhook_url(value, settings)
        else:
            changes[name] = value.model_dump(mode="json") if value is not None else None
    if changes:
        merchant = await merchants.update_merchant(session, merchant, changes)
    if "webhook_url" in changes:
        await merchants.reset_webhook_breaker(session, merchant)
    return merchant_public(merchant)


@router.get(
    "/{merchant_id}",
    summary="A merchant, as ops see it (webhook endpoint health included)",
    responses=problem_responses(HTTPStatus.NOT_FOUND),
)
async def get_merchant(
    merchant_id: MerchantIdPath, _ops: OpsKey, session: SessionDep
) -> MerchantPublic:
    merchant = await merchants.get_merchant(session, merchant_id)
    if merchant is None:
        raise not_found(f"Merchant {merchant_id!r}")
    return merchant_public(merchant)


# --- keys ------------------------------------------------------------------------


@router.post(
    "/me/keys",
    status_code=HTTPStatus.CREATED,
    summary="Mint an API key (owner): another owner key to rotate to, or a staff key",
    responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def create_key(body: KeyCreate, merchant: OwnerMerchant, session: SessionDep) -> KeyCreated:
    key, api_key = await mint_key(session, merchant.id, body.role)
    return KeyCreated(key_id=key.id, api_key=api_key, role=body.role)


@router.get("/me/keys", summary="The merchant's keys that still work (owner)")
async def list_keys(merchant: OwnerMerchant, session: SessionDep) -> list[KeyPublic]:
    return [key_public(key) for key in await api_keys.list_keys(session, merchant.id)]


@router.delete(
    "/me/keys/{key_id}",
    status_code=HTTPStatus.NO_CONTENT,
    summary="Revoke a key (owner)",
    description="A staff key stops working at once; an owner key keeps working for "
    "`KEY_GRACE_SECONDS` (default a day), so a rotation can roll out. The last owner key "
    "cannot be deleted (409): mint a new one first.",
    responses=problem_responses(HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT),
)
async def delete_key(
    key_id: KeyIdPath, merchant: OwnerMerchant, session: SessionDep, resources: ResourcesDep
) -> Response:
    settings = resources.settings
    key = await api_keys.get_key(session, merchant.id, key_id)
    now = datetime.now(UTC)
    if key is None or (key.expires_at is not None and key.expires_at <= now):
        raise not_found(f"Key {key_id!r}")
    if key.expires_at is None:
        if key.role == "owner":
            if await api_keys.lasting_owner_keys(session, merchant.id) <= 1:
                raise conflict(
                    "last-owner-key",
                    "This is the merchant's last owner key: mint a new owner key first.",
                )
            await api_keys.expire_key(
                session, key, now + timedelta(seconds=settings.key_grace_seconds)
            )
        else:
            await api_keys.expire_key(session, key, now)
        await session.commit()  # before the cache forgets it, so no request reloads it as live
        resources.keys.forget(key.key_hash)
    return Response(status_code=HTTPStatus.NO_CONTENT)
