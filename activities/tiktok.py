"""TikTok Shop activities: signed API calls for order detail and package shipping."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from fulfil import errors
from fulfil.messages.common import Address
from fulfil.messages.tiktok import (
    ShipTikTokPackage,
    TikTokLine,
    TikTokOrder,
    TikTokOrderRef,
)
from fulfil.signatures import tiktok_api_signature

log = logging.getLogger(__name__)

TIKTOK_API = "https://open-api.tiktokglobalshop.com"
ORDER_DETAIL = "/order/202309/orders"
SHIP_PACKAGE = "/fulfillment/202309/packages/{package_id}/ship"
AUTHORIZED_SHOPS = "/authorization/202309/shops"
SHIPPING_PROVIDERS = "/logistics/202309/delivery_options/{delivery_option_id}/shipping_providers"
# TikTok answers these codes (with HTTP 200) for requests that will never succeed as
# sent: bad parameters, unknown order/package, a status that forbids the call.
PERMANENT_CODES = {36009003, 36009004, 21001001, 21011001, 21011002, 21011003, 106001, 105002}


def _cents(amount: Any) -> int:
    return int((Decimal(str(amount or "0")) * 100).to_integral_value())


def _recipient(raw: dict[str, Any]) -> Address:
    levels = {
        str(d.get("address_level_name", "")).lower(): str(d.get("address_name", ""))
        for d in raw.get("district_info") or []
    }
    return Address(
        name=raw.get("name") or "TikTok buyer",
        street1=raw.get("address_line1") or raw.get("full_address") or "-",
        street2=raw.get("address_line2") or None,
        city=raw.get("city") or levels.get("city") or levels.get("county") or "-",
        state=raw.get("state") or levels.get("state") or levels.get("province") or "",
        zip=raw.get("postal_code") or "-",
        country=(raw.get("region_code") or "US").upper(),
        phone=raw.get("phone_number") or None,
    )


class TikTokActivities:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_base: str,
        app_key: str,
        app_secret: str,
        access_token: str,
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._app_key = app_key
        self._app_secret = app_secret
        self._access_token = access_token
        self._ciphers: dict[str, str] = {}
        self._providers: dict[str, dict[str, str]] = {}

    async def _call(
        self,
        method: str,
        path: str,
        shop_id: str | None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        query = {"app_key": self._app_key, "timestamp": str(int(time.time())), **(params or {})}
        if shop_id:
            query["shop_cipher"] = await self._shop_cipher(shop_id)
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        query["sign"] = tiktok_api_signature(self._app_secret, path, query, raw)
        response = await self._http.request(
            method,
            f"{self._base}{path}",
            params=query,
            content=raw or None,
            headers={"x-tts-access-token": self._access_token, "Content-Type": "application/json"},
        )
        if response.status_code >= 500 or response.status_code == 429:
            response.raise_for_status()
        try:
            reply: dict[str, Any] = response.json()
        except ValueError:
            response.raise_for_status()
            raise
        code = reply.get("code")
        if code != 0:
            message = f"TikTok {path} answered code {code}: {reply.get('message')}"
            if code in PERMANENT_CODES or 400 <= response.status_code < 500:
                raise ApplicationError(message, type=errors.TIKTOK_REJECTED, non_retryable=True)
            raise RuntimeError(message)
        data: dict[str, Any] = reply.get("data") or {}
        return data

    async def _shop_cipher(self, shop_id: str) -> str:
        """Shop-scoped calls name the shop by its cipher, learnt from the authorized shops."""
        if shop_id not in self._ciphers:
            data = await self._call("GET", AUTHORIZED_SHOPS, None)
            for shop in data.get("shops") or []:
                self._ciphers[str(shop.get("id"))] = str(shop.get("cipher"))
        cipher = self._ciphers.get(shop_id)
        if cipher is None:
            raise ApplicationError(
                f"shop {shop_id} has not authorized this app",
                type=errors.TIKTOK_REJECTED,
                non_retryable=True,
            )
        return cipher

    async def _provider_id(self, shop_id: str, delivery_option_id: str, carrier: str) -> str:
        """TikTok's id for the carrier of our label (self-shipment names it by id)."""
        if delivery_option_id not in self._providers:
            data = await self._call(
                "GET", SHIPPING_PROVIDERS.format(delivery_option_id=delivery_option_id), shop_id
            )
            self._providers[delivery_option_id] = {
                str(p.get("name", "")).lower(): str(p.get("id"))
                for p in data.get("shipping_providers") or []
            }
        providers = self._providers[delivery_option_id]
        wanted = carrier.lower()
        for name, provider_id in providers.items():
            if name == wanted or name.startswith(wanted):
                return provider_id
        raise ApplicationError(
            f"TikTok knows no shipping provider for {carrier}",
            type=errors.TIKTOK_REJECTED,
            non_retryable=True,
        )

    @activity.defn
    async def get_tiktok_order(self, ref: TikTokOrderRef) -> TikTokOrder:
        data = await self._call("GET", ORDER_DETAIL, ref.shop_id, {"ids": ref.tiktok_order_id})
        orders = data.get("orders") or []
        if not orders:
            raise ApplicationError(
                f"TikTok order {ref.tiktok_order_id} not found",
                type=errors.TIKTOK_REJECTED,
                non_retryable=True,
            )
        raw = orders[0]
        payment = raw.get("payment") or {}
        currency = payment.get("currency") or "USD"
        lines: dict[str, TikTokLine] = {}
        for item in raw.get("line_items") or []:
            sku = item.get("seller_sku") or item.get("sku_id") or "UNKNOWN"
            quantity = int(item.get("quantity") or 1)
            if sku in lines:
                lines[sku].quantity += quantity
            else:
                lines[sku] = TikTokLine(
                    sku=sku,
                    name=item.get("product_name") or "",
                    quantity=quantity,
                    unit_price=_cents(item.get("sale_price")),
                )
        packages = raw.get("packages") or []
        subtotal = _cents(payment.get("sub_total")) or sum(
            line.unit_price * line.quantity for line in lines.values()
        )
        shipping = _cents(payment.get("shipping_fee"))
        return TikTokOrder(
            shop_id=ref.shop_id,
            tiktok_order_id=str(raw.get("id") or ref.tiktok_order_id),
            status=str(raw.get("status") or ""),
            currency=currency,
            lines=list(lines.values()),
            subtotal=subtotal,
            shipping=shipping,
            total=_cents(payment.get("total_amount")) or subtotal + shipping,
            recipient=_recipient(raw.get("recipient_address") or {}),
            package_id=str(packages[0]["id"]) if packages else None,
            delivery_option_id=raw.get("delivery_option_id") or None,
        )

    @activity.defn
    async def ship_tiktok_package(self, req: ShipTikTokPackage) -> None:
        """Push the tracking number to TikTok; repeating it for the package is harmless."""
        provider_id = await self._provider_id(
            req.shop_id, req.delivery_option_id or "default", req.carrier
        )
        await self._call(
            "POST",
            SHIP_PACKAGE.format(package_id=req.package_id),
            req.shop_id,
            body={
                "handover_method": "DROP_OFF",
                "self_shipment": {
                    "tracking_number": req.tracking_number,
                    "shipping_provider_id": provider_id,
                },
            },
        )
        log.info(
            "tracking pushed to TikTok",
            extra={"tiktok_order_id": req.tiktok_order_id, "tracking_number": req.tracking_number},
        )
