"""The one place Temporal clients are built (API, worker, tests, scripts)."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig

from fulfil.codec import KeyRing, data_converter
from fulfil.settings import Settings

MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
TIKTOK_ORDER_ID = SearchAttributeKey.for_keyword("TikTokOrderId")
PAYOUT_ID = SearchAttributeKey.for_keyword("PayoutId")
DEPLOYMENT_ID = SearchAttributeKey.for_keyword("DeploymentId")

SEARCH_ATTRIBUTES = (MERCHANT_ID, ORDER_ID, ORDER_STATUS, TIKTOK_ORDER_ID, PAYOUT_ID, DEPLOYMENT_ID)


def tls_config(settings: Settings) -> TLSConfig | None:
    """TLS from the PEM files of ``TEMPORAL_TLS_*`` (mTLS, a private CA, or both). ``None``
    when none is set: plaintext, or TLS with the system's CAs when ``TEMPORAL_API_KEY`` is
    set (the SDK turns TLS on for an API key)."""
    if not (settings.temporal_tls_cert or settings.temporal_tls_ca):
        return None
    return TLSConfig(
        server_root_ca_cert=_pem(settings.temporal_tls_ca),
        client_cert=_pem(settings.temporal_tls_cert),
        client_private_key=_pem(settings.temporal_tls_key),
    )


def _pem(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A runtime whose SDK metrics Prometheus scrapes, for the worker process; ``None`` when
    ``WORKER_METRICS_PORT`` is 0. Raises when the address cannot be bound."""
    if not settings.worker_metrics_port:
        return None
    address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(KeyRing.parse(settings.codec_keys)),
        tls=tls_config(settings),
        api_key=settings.temporal_api_key or None,
        runtime=runtime,
    )
