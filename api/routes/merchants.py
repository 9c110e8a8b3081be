"""Merchants: created by ops; each merchant reads and changes its own settings."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request

from api.deps import CurrentMerchant, OpsKey, SessionDep, SettingsDep
from api.keys import display_prefix, hash_api_key, new_api_key, new_webhook_secret
from api.problems import conflict, problem_responses
from db import merchants
from db.models import Merchant
from fulfil.codec import KeyRing
from fulfil.ids import new_id
from fulfil.schemas import MerchantCreate, MerchantCreated, MerchantPublic, MerchantUpdate

router = APIRouter(
    prefix="/api/v1/merchants",
    tags=["merchants"],
    responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
)


def merchant_public(merchant: Merchant) -> MerchantPublic:
    return MerchantPublic.model_validate(
        {
            "merchant_id": merchant.id,
            "name": merchant.name,
            "email": merchant.email,
            "api_key_prefix": merchant.api_key_prefix,
            "stripe_account": merchant.stripe_account,
            "tiktok_shop_id": merchant.tiktok_shop_id,
            "ship_from": merchant.ship_from,
            "shipping_policy": merchant.shipping_policy,
            "webhook_url": merchant.webhook_url,
            "created_at": merchant.created_at,
        }
    )


@router.post(
    "",
    status_code=HTTPStatus.CREATED,
    summary="Create a merchant (ops)",
    description="The API key and webhook secret are shown in this answer only.",
    responses=problem_responses(HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def create_merchant(
    body: MerchantCreate, _ops: OpsKey, session: SessionDep, settings: SettingsDep, request: Request
) -> MerchantCreated:
    api_key = new_api_key()
    webhook_secret = new_webhook_secret()
    merchant = await merchants.create_merchant(
        session,
        merchant_id=new_id("mer"),
        name=body.name,
        email=body.email,
        api_key_hash=hash_api_key(api_key),
        api_key_prefix=display_prefix(api_key),
        webhook_secret_sealed=KeyRing.parse(settings.codec_keys).seal_text(webhook_secret),
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
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
    request.state.merchant_id = merchant.id
    return MerchantCreated(merchant_id=merchant.id, api_key=api_key, webhook_secret=webhook_secret)


@router.get("/me", summary="The calling merchant, without its secrets")
async def get_me(merchant: CurrentMerchant) -> MerchantPublic:
    return merchant_public(merchant)


@router.patch(
    "/me",
    summary="Change webhook URL, ship-from address or shipping policy",
    responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def update_me(
    body: MerchantUpdate, merchant: CurrentMerchant, session: SessionDep
) -> MerchantPublic:
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if name == "webhook_url":
            changes[name] = str(value) if value is not None else None
        else:
            changes[name] = value.model_dump(mode="json") if value is not None else None
    if changes:
        merchant = await merchants.update_merchant(session, merchant, changes)
    return merchant_public(merchant)
