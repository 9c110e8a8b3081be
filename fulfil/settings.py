"""The one place configuration is read from the environment.

Every address and secret comes from an environment variable; the defaults
are the development stack of ``make run``. With ``ENV=production`` every dev
secret is refused (also as one entry of a list), secrets must be long enough,
https is required for merchant webhooks, and unset ``*_API_BASE`` mean the
real providers. The public dev codec key works only with ``ENV=test``.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fulfil.messages.deployment import DeploymentConfig
from fulfil.messages.payouts import PayoutConfig

# A fixed, public key: tests only (recorded histories are encrypted with it).
TEST_CODEC_KEYS = "k1:ZGV2LWtleS1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24="
PUBLIC_CODEC_KEYS = (TEST_CODEC_KEYS, "test1:dGVzdC1rZXktZm9yLXJlY29yZGVkLWhpc3Rvcmllcy0=")

# Every default that is a secret or an account of the dev stack, refused in production.
DEV_SECRETS = {
    "ops_api_key": "ops_dev_key",
    "tiktok_app_key": "tiktok_dev_app",
    "tiktok_app_secret": "tiktok_dev_secret",
    "tiktok_access_token": "tiktok_dev_access_token",
    "stripe_api_key": "sk_test_dev",
    "stripe_webhook_secret": "whsec_dev",
    "shippo_api_key": "shippo_test_dev",
    "shippo_webhook_token": "shippo_dev_token",
    "vault_key": "dmF1bHQtZGV2LWtleS1kby1ub3QtdXNlLWluLXByb2Q=",
}
# The shortest secret production accepts (characters).
MIN_SECRET_LENGTHS = {
    "ops_api_key": 32,
    "tiktok_app_secret": 16,
    "tiktok_access_token": 16,
    "stripe_api_key": 16,
    "stripe_webhook_secret": 16,
    "shippo_api_key": 16,
    "shippo_webhook_token": 24,
}

PROVIDER_BASES = (
    "stripe_api_base",
    "shippo_api_base",
    "tiktok_api_base",
    "cloudflare_api_base",
    "email_api_base",
    "cloudflare_check_base",
)

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"

    # Infrastructure
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    redis_url: str = "redis://127.0.0.1:6379/0"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # The Temporal UI, for links to a run (ops CLI); the dev server's UI by default.
    temporal_ui_url: str = "http://127.0.0.1:8233"
    # A Temporal cluster over TLS: paths to PEM files. Client certificate and key (mTLS) go
    # together; the CA only when the server's certificate is not publicly trusted. Temporal
    # Cloud takes mTLS or an API key (TLS is then on by itself). Empty: plaintext (dev).
    temporal_tls_cert: str = ""
    temporal_tls_key: str = ""
    temporal_tls_ca: str = ""
    temporal_api_key: str = ""
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
    tiktok_app_key: str = DEV_SECRETS["tiktok_app_key"]
    tiktok_app_secret: str = DEV_SECRETS["tiktok_app_secret"]
    tiktok_access_token: str = DEV_SECRETS["tiktok_access_token"]
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
    # After release a dispute can still reverse the transfer for this long (card networks
    # allow about 120 days); the payout's workflow watches until then.
    payout_dispute_window_seconds: int = Field(default=120 * 86_400, ge=0)
    # A transfer Stripe refuses (a restricted seller) is tried again after this, doubling
    # up to an hour.
    payout_transfer_retry_seconds: int = Field(default=30, ge=1, le=3600)
    # Package deployments: the vault keeps the buyer's token this long; a run whose token
    # expired waits this long for a new one; a step failing transiently gives up after this.
    deploy_token_ttl_seconds: int = Field(default=3600, ge=60)
    deploy_token_wait_seconds: int = Field(default=900, ge=1)
    deploy_step_give_up_seconds: int = Field(default=600, ge=1)
    deploy_step_heartbeat_seconds: int = Field(default=8, ge=2, le=300)
    # Where the post-deploy http check reaches a hostname; unset (production) = https://{host}.
    cloudflare_check_base: str | None = "http://127.0.0.1:8100/_sandbox/cloudflare/hosts"
    # How long POST /api/checkout/create-session waits for the charge's PaymentIntent id.
    checkout_wait_seconds: float = Field(default=8.0, ge=0)
    flat_shipping_amount: int = Field(default=500, ge=0)
    default_currency: str = "USD"
    payment_action_timeout_seconds: int = Field(default=900, ge=1)
    # Tracking is read when Shippo's webhook pings, and polled after this long without one.
    tracking_poll_seconds: int = Field(default=1800, ge=1)

    # Payload encryption: comma-separated "key_id:base64(32 bytes)"; the first key
    # encrypts, every key decrypts (rotation keeps old ones listed). Required outside
    # tests: `make run` generates a ring per install under .data/.
    codec_keys: str = ""
    # The codec endpoints (POST /codec/encode|decode) the Temporal UI calls from the browser:
    # the UI's origins (CORS, comma-separated). Who may call: the ops key, or an access
    # token of CODEC_OIDC_ISSUER (audience CODEC_OIDC_AUDIENCE) whose CODEC_OIDC_OPS_CLAIM
    # holds CODEC_OIDC_OPS_VALUE, passed by the UI (codec.passAccessToken).
    codec_cors_origins: str = "http://127.0.0.1:8233,http://localhost:8233"
    codec_oidc_issuer: str = ""
    codec_oidc_audience: str = ""
    # Where the issuer's keys are; unset: found through the issuer's OIDC discovery document.
    codec_oidc_jwks_url: str = ""
    codec_oidc_ops_claim: str = "groups"
    codec_oidc_ops_value: str = "fulfil-ops"
    # Dev only (refused in production): the UI's origins may decode without any token, so the
    # UI that `make run` starts shows payloads with no login. Anyone else still gets 401.
    codec_open_to_ui: bool = False
    max_codec_body_bytes: int = Field(default=4 * MiB, ge=1024)
    # The token vault's AES-256 key (base64), for the buyer's Cloudflare token.
    vault_key: str = DEV_SECRETS["vault_key"]

    # Outbox relay: rows older than this and not dispatched are re-driven.
    outbox_relay_interval_seconds: float = Field(default=2.0, gt=0)
    # Verified provider webhooks are kept this long (then deleted), card data never.
    inbox_retention_days: int = Field(default=30, ge=1)

    # Limits of the HTTP API
    max_body_bytes: int = Field(default=1 * MiB, ge=1024)
    max_webhook_body_bytes: int = Field(default=256 * 1024, ge=1024)
    rate_limit_per_minute: int = Field(default=600, ge=1)
    # The unauthenticated surface (no or a bad key; webhooks and probes excluded), per IP.
    anonymous_rate_limit: int = Field(default=100, ge=1)
    anonymous_rate_window_seconds: int = Field(default=900, ge=1)
    # A deleted owner key keeps working this long (key rotation).
    key_grace_seconds: int = Field(default=86_400, ge=0)

    # Merchant webhooks: URL prefixes allowed although they resolve to private or
    # loopback addresses (comma-separated; the dev stack allows the sandbox's hooks).
    webhook_url_allowlist: str = ""
    # Deliveries run on a task queue of their own with this many at once.
    notify_concurrency: int = Field(default=20, ge=1)
    # Verified webhooks of one provider (Stripe, TikTok, Shippo) recorded at once by one API
    # process; the rest wait their turn. A provider's burst then holds at most this many of
    # the API's 30 database connections, and merchants' requests keep the others.
    webhook_concurrency: int = Field(default=6, ge=1, le=8)
    # How long a run's next workflow task waits for the worker that has the run cached before
    # any worker takes it (replaying the history). After a kill -9 that is dead time.
    sticky_schedule_to_start_seconds: float = Field(default=5.0, gt=0, le=60)
    # An API request still unanswered after this long is answered 503 (a hung database or
    # Redis); PostgreSQL connections give up after DATABASE_CONNECT_TIMEOUT_SECONDS.
    api_request_deadline_seconds: float = Field(default=15.0, gt=0, le=300)
    database_connect_timeout_seconds: int = Field(default=5, ge=1, le=60)
    # Runs a worker keeps in memory between their tasks (each about 0.25 MiB). An evicted run
    # replays its history on its next task: cheap for the long waits (tracking, holds) that
    # make up most open runs. 400 keeps a worker under 300 MiB with 1,000 open orders.
    worker_max_cached_workflows: int = Field(default=400, ge=0)
    # Threads for blocking provider SDK calls (Shippo) in the worker.
    worker_io_threads: int = Field(default=50, ge=1, le=1000)
    # The worker's Temporal SDK metrics (temporal_* : task latencies, slots, polls, sticky
    # cache) for Prometheus at http://WORKER_METRICS_HOST:WORKER_METRICS_PORT/metrics; 0: off.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    # After this many failed deliveries in a row an endpoint is parked for the cool-down.
    webhook_breaker_failures: int = Field(default=5, ge=1)
    webhook_breaker_cooldown_seconds: int = Field(default=900, ge=1)

    @field_validator(*PROVIDER_BASES, mode="before")
    @classmethod
    def _empty_means_real_provider(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _checkout_answers_before_the_deadline(self) -> Settings:
        """A checkout waits for its charge inside the request deadline; a wait as long as the
        deadline turns the 201 it would give (``payment_intent_id`` null) into a 503."""
        if self.checkout_wait_seconds > self.api_request_deadline_seconds - 1:
            raise ValueError(
                "CHECKOUT_WAIT_SECONDS must be at least 1 s shorter than "
                "API_REQUEST_DEADLINE_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _temporal_client_certificate_pair(self) -> Settings:
        if bool(self.temporal_tls_cert) != bool(self.temporal_tls_key):
            raise ValueError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS)")
        return self

    @model_validator(mode="after")
    def _real_providers_in_production(self) -> Settings:
        """In production an unset ``*_API_BASE`` means the real provider, not the sandbox."""
        if self.env == "production":
            for name in PROVIDER_BASES:
                if name not in self.model_fields_set:
                    setattr(self, name, None)
        return self

    @model_validator(mode="after")
    def _codec_keys(self) -> Settings:
        if not self.codec_keys.strip():
            if self.env != "test":
                raise ValueError(
                    "CODEC_KEYS is not set: give 'key_id:base64(32 bytes)' (make run generates "
                    "a key ring per install under .data/)"
                )
            self.codec_keys = TEST_CODEC_KEYS
        if self.env != "test":
            public = [key for key in self.codec_key_entries() if key in _public_codec_entries()]
            if public:
                raise ValueError(
                    "CODEC_KEYS holds the public test key; it is refused outside ENV=test"
                )
        return self

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        for name, dev in DEV_SECRETS.items():
            value = str(getattr(self, name))
            if value == dev or dev in _entries(value):
                problems.append(f"{name.upper()} is the development value")
        for name, length in MIN_SECRET_LENGTHS.items():
            if len(str(getattr(self, name)).strip()) < length:
                problems.append(f"{name.upper()} must be at least {length} characters")
        for entry in self.codec_key_entries():
            key_id, _, encoded = entry.partition(":")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                problems.append(f"CODEC_KEYS entry {key_id!r} is not base64 of 32 bytes")
        for prefix in self.webhook_allowlist():
            if not prefix.startswith("https://"):
                problems.append(f"WEBHOOK_URL_ALLOWLIST entry {prefix!r} is not https")
        if self.codec_open_to_ui:
            problems.append("CODEC_OPEN_TO_UI lets anyone at the UI's origin decode payloads")
        if self.codec_oidc_issuer and not self.codec_oidc_issuer.startswith("https://"):
            problems.append("CODEC_OIDC_ISSUER is not https")
        if problems:
            raise ValueError("refused with ENV=production: " + "; ".join(problems))
        return self

    def codec_key_entries(self) -> list[str]:
        return _entries(self.codec_keys)

    def webhook_allowlist(self) -> list[str]:
        return _entries(self.webhook_url_allowlist)

    def codec_origins(self) -> list[str]:
        return [origin.rstrip("/") for origin in _entries(self.codec_cors_origins)]

    def deployment_config(self) -> DeploymentConfig:
        return DeploymentConfig(
            step_give_up_seconds=self.deploy_step_give_up_seconds,
            token_wait_seconds=self.deploy_token_wait_seconds,
            step_heartbeat_seconds=self.deploy_step_heartbeat_seconds,
            check_base=self.cloudflare_check_base,
        )

    def payout_config(self) -> PayoutConfig:
        return PayoutConfig(
            hold_seconds=self.payout_hold_seconds,
            fee_bps=self.platform_fee_bps,
            dispute_window_seconds=self.payout_dispute_window_seconds,
            transfer_retry_seconds=self.payout_transfer_retry_seconds,
        )

    @property
    def notify_task_queue(self) -> str:
        return notify_task_queue(self.task_queue)


def notify_task_queue(task_queue: str) -> str:
    """Emails and merchant webhooks run on a task queue of their own beside ``task_queue``."""
    return f"{task_queue}-notify"


def _entries(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _public_codec_entries() -> set[str]:
    return {entry for keys in PUBLIC_CODEC_KEYS for entry in _entries(keys)}


@lru_cache
def get_settings() -> Settings:
    return Settings()
