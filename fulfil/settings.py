"""The one place configuration is read from the environment.

Every address and secret comes from an environment variable; the defaults
are the development stack of ``make run``. With ``ENV=production`` the dev
secrets are refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRETS = {
    "ops_api_key": "ops_dev_key",
    "tiktok_app_secret": "tiktok_dev_secret",
    "stripe_api_key": "sk_test_dev",
    "stripe_webhook_secret": "whsec_dev",
    "shippo_api_key": "shippo_test_dev",
    "shippo_webhook_token": "shippo_dev_token",
    "codec_keys": "k1:ZGV2LWtleS1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24=",
}


PROVIDER_BASES = (
    "stripe_api_base",
    "shippo_api_base",
    "tiktok_api_base",
    "cloudflare_api_base",
    "email_api_base",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"

    # Infrastructure
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    redis_url: str = "redis://127.0.0.1:6379/0"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "fulfilment"

    # Engine's own HTTP address (the sandbox sends provider webhooks here)
    api_base: str = "http://127.0.0.1:8000"
    ops_api_key: str = DEV_SECRETS["ops_api_key"]

    # Providers; *_api_base unset in production = the real services
    stripe_api_key: str = DEV_SECRETS["stripe_api_key"]
    stripe_webhook_secret: str = DEV_SECRETS["stripe_webhook_secret"]
    stripe_api_base: str | None = "http://127.0.0.1:8100/stripe"
    shippo_api_key: str = DEV_SECRETS["shippo_api_key"]
    shippo_webhook_token: str = DEV_SECRETS["shippo_webhook_token"]
    shippo_api_base: str | None = "http://127.0.0.1:8100/shippo"
    tiktok_app_key: str = "tiktok_dev_app"
    tiktok_app_secret: str = DEV_SECRETS["tiktok_app_secret"]
    tiktok_access_token: str = "tiktok_dev_access_token"
    tiktok_api_base: str | None = "http://127.0.0.1:8100/tiktok"
    cloudflare_api_base: str | None = "http://127.0.0.1:8100/cloudflare/client/v4"
    email_api_base: str | None = "http://127.0.0.1:8100/email"
    email_from: str = "orders@fulfil.example"

    # Sandbox
    sandbox_base: str = "http://127.0.0.1:8100"
    sandbox_clock_pace: float = Field(default=60.0, ge=0)

    # Business rules
    platform_fee_bps: int = Field(default=1500, ge=0, le=10_000)
    payout_hold_seconds: int = Field(default=259_200, ge=0)
    payout_run_interval_seconds: int = Field(default=900, ge=1)
    flat_shipping_amount: int = Field(default=500, ge=0)
    default_currency: str = "USD"
    payment_action_timeout_seconds: int = Field(default=900, ge=1)
    # Tracking is read when Shippo's webhook pings, and polled after this long without one.
    tracking_poll_seconds: int = Field(default=1800, ge=1)

    # Payload encryption: comma-separated "key_id:base64(32 bytes)"; the first
    # key encrypts, every key decrypts (rotation keeps old ones listed).
    codec_keys: str = DEV_SECRETS["codec_keys"]

    # Outbox relay: rows older than this and not dispatched are re-driven.
    outbox_relay_interval_seconds: float = Field(default=2.0, gt=0)

    @field_validator(
        "stripe_api_base",
        "shippo_api_base",
        "tiktok_api_base",
        "cloudflare_api_base",
        "email_api_base",
        mode="before",
    )
    @classmethod
    def _empty_means_real_provider(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _real_providers_in_production(self) -> Settings:
        """In production an unset ``*_API_BASE`` means the real provider, not the sandbox."""
        if self.env == "production":
            for name in PROVIDER_BASES:
                if name not in self.model_fields_set:
                    setattr(self, name, None)
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.env == "production":
            bad = [name for name, dev in DEV_SECRETS.items() if getattr(self, name) == dev]
            if bad:
                raise ValueError(
                    "development secrets are not allowed with ENV=production: "
                    + ", ".join(name.upper() for name in bad)
                )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
