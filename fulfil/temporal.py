"""The one place Temporal clients are built (API, worker, tests, scripts)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from fulfil.codec import KeyRing, data_converter
from fulfil.settings import Settings

MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
TIKTOK_ORDER_ID = SearchAttributeKey.for_keyword("TikTokOrderId")
PAYOUT_ID = SearchAttributeKey.for_keyword("PayoutId")
DEPLOYMENT_ID = SearchAttributeKey.for_keyword("DeploymentId")

SEARCH_ATTRIBUTES = (MERCHANT_ID, ORDER_ID, ORDER_STATUS, TIKTOK_ORDER_ID, PAYOUT_ID, DEPLOYMENT_ID)


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(KeyRing.parse(settings.codec_keys)),
    )
