"""Settings: production refuses dev and weak secrets and defaults to the real providers;
the public codec key works in tests only."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from pydantic import ValidationError

from fulfil.settings import DEV_SECRETS, TEST_CODEC_KEYS, Settings


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def strong() -> dict[str, Any]:
    """Production secrets that pass every check."""
    return {
        "ops_api_key": "o" * 40,
        "tiktok_app_key": "app-key-real",
        "tiktok_app_secret": "t" * 32,
        "tiktok_access_token": "a" * 32,
        "stripe_api_key": "sk_live_" + "s" * 24,
        "stripe_webhook_secret": "whsec_" + "w" * 24,
        "shippo_api_key": "shippo_live_" + "x" * 24,
        "shippo_webhook_token": "y" * 32,
        "vault_key": key(),
        "codec_keys": f"p1:{key()}",
    }


def test_production_accepts_strong_secrets_and_defaults_to_real_providers() -> None:
    settings = Settings(env="production", shippo_api_base="", **strong())
    assert settings.stripe_api_base is None
    assert settings.shippo_api_base is None


@pytest.mark.parametrize("name", sorted(DEV_SECRETS))
def test_production_refuses_every_dev_default(name: str) -> None:
    with pytest.raises(ValidationError, match=f"{name.upper()} is the development value"):
        Settings(env="production", **{**strong(), name: DEV_SECRETS[name]})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tiktok_app_secret", ""),  # finding: made TikTok webhooks forgeable
        ("ops_api_key", "x"),  # finding: a 1-character ops key
        ("shippo_webhook_token", "short"),
    ],
)
def test_production_refuses_weak_secrets(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=f"{name.upper()} must be at least"):
        Settings(env="production", **{**strong(), name: value})


def test_the_public_codec_key_is_refused_anywhere_in_the_ring_outside_tests() -> None:
    """Finding: the dev codec key was accepted as a second key."""
    ring = f"p1:{key()},{TEST_CODEC_KEYS}"
    with pytest.raises(ValidationError, match="public test key"):
        Settings(env="production", **{**strong(), "codec_keys": ring})
    with pytest.raises(ValidationError, match="public test key"):
        Settings(env="dev", codec_keys=TEST_CODEC_KEYS)
    assert Settings(env="test", codec_keys=TEST_CODEC_KEYS).codec_keys == TEST_CODEC_KEYS


def test_codec_keys_are_required_outside_tests() -> None:
    with pytest.raises(ValidationError, match="CODEC_KEYS is not set"):
        Settings(env="dev", codec_keys="")
    assert Settings(env="test").codec_keys == TEST_CODEC_KEYS


def test_production_codec_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValidationError, match="not base64 of 32 bytes"):
        Settings(env="production", **{**strong(), "codec_keys": "p1:c2hvcnQ="})


def test_production_allowlist_is_https_only() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_URL_ALLOWLIST"):
        Settings(env="production", **strong(), webhook_url_allowlist="http://10.0.0.1/hooks/")


def test_the_transfer_retry_reaches_the_payout_and_its_policy() -> None:
    from datetime import timedelta

    from workflows.policies import transfer_retry

    test = {"env": "test", "codec_keys": TEST_CODEC_KEYS}
    config = Settings(**test, payout_transfer_retry_seconds=7).payout_config()
    assert config.transfer_retry_seconds == 7
    policy = transfer_retry(config.transfer_retry_seconds)
    assert policy.initial_interval == timedelta(seconds=7)
    assert policy.maximum_interval == timedelta(hours=1)
    assert Settings(**test).payout_config().transfer_retry_seconds == 30
    with pytest.raises(ValidationError, match="payout_transfer_retry_seconds"):
        Settings(**test, payout_transfer_retry_seconds=0)


def test_a_checkout_stops_waiting_before_the_request_deadline() -> None:
    test = {"env": "test", "codec_keys": TEST_CODEC_KEYS}
    assert Settings(**test).checkout_wait_seconds < Settings(**test).api_request_deadline_seconds
    Settings(**test, checkout_wait_seconds=14, api_request_deadline_seconds=15)
    with pytest.raises(ValidationError, match="CHECKOUT_WAIT_SECONDS"):
        Settings(**test, checkout_wait_seconds=15, api_request_deadline_seconds=15)
    with pytest.raises(ValidationError, match="CHECKOUT_WAIT_SECONDS"):
        Settings(**test, checkout_wait_seconds=30)
