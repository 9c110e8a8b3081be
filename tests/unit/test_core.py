"""Pure pieces: pricing, fee split, rate choice, the codec, signatures, settings."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from fulfil.codec import EncryptionCodec, KeyRing
from fulfil.models import RateOption, ShippingPolicy
from fulfil.money import DiscountRule, PricedLine, price, split_fee
from fulfil.settings import Settings
from fulfil.shipping import choose_rate
from fulfil.signatures import (
    sign_merchant_webhook,
    tiktok_api_signature,
    tiktok_webhook_signature,
    verify_merchant_webhook,
)


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_price_applies_percent_discount_to_items_not_shipping() -> None:
    lines = [
        PricedLine(sku="A", quantity=2, unit_price=1800),
        PricedLine(sku="B", quantity=1, unit_price=999),
    ]
    totals = price(lines, DiscountRule(code="X", percent_off=10), 500, "USD")
    assert (totals.subtotal, totals.discount, totals.shipping, totals.total) == (
        4599,
        459,
        500,
        4640,
    )


def test_amount_discount_never_exceeds_subtotal() -> None:
    totals = price(
        [PricedLine(sku="A", quantity=1, unit_price=300)],
        DiscountRule(code="X", amount_off=1000),
        500,
        "USD",
    )
    assert (totals.discount, totals.total) == (300, 500)


def test_platform_fee_rounds_down_and_parts_add_up() -> None:
    assert split_fee(10_001, 1500) == (1500, 8501)
    fee, seller = split_fee(3740, 1500)
    assert fee + seller == 3740


RATES = [
    RateOption(
        rate_id="a", carrier="USPS", service="Ground", amount=600, currency="USD", estimated_days=5
    ),
    RateOption(
        rate_id="b",
        carrier="USPS",
        service="Priority",
        amount=900,
        currency="USD",
        estimated_days=2,
    ),
    RateOption(
        rate_id="c",
        carrier="UPS",
        service="Next Day",
        amount=3000,
        currency="USD",
        estimated_days=1,
    ),
    RateOption(
        rate_id="d", carrier="FedEx", service="2Day", amount=900, currency="USD", estimated_days=2
    ),
]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ShippingPolicy(), "a"),
        (ShippingPolicy(rate="fastest"), "c"),
        (ShippingPolicy(rate="fastest", carriers=["usps", "fedex"]), "b"),
        (ShippingPolicy(rate="cheapest", carriers=["FEDEX"]), "d"),
    ],
)
def test_rate_choice_follows_the_policy(policy: ShippingPolicy, expected: str) -> None:
    chosen = choose_rate(RATES, policy)
    assert chosen is not None
    assert chosen.rate_id == expected


def test_no_rate_when_no_carrier_is_allowed() -> None:
    assert choose_rate(RATES, ShippingPolicy(carriers=["dhl"])) is None


async def test_codec_encrypts_and_survives_key_rotation() -> None:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email":"ada@example.com"}')
    k1, k2 = f"k1:{key()}", f"k2:{key()}"
    sealed = await EncryptionCodec(KeyRing.parse(k1)).encode([payload])
    assert b"ada@example.com" not in sealed[0].data
    assert sealed[0].metadata["encryption-key-id"] == b"k1"
    # A rotated ring (new first key, old key kept) still opens old payloads
    # and seals new ones with the new key.
    rotated = EncryptionCodec(KeyRing.parse(f"{k2},{k1}"))
    assert (await rotated.decode(sealed))[0] == payload
    assert (await rotated.encode([payload]))[0].metadata["encryption-key-id"] == b"k2"
    with pytest.raises(ValueError, match="unknown encryption key"):
        await EncryptionCodec(KeyRing.parse(k2)).decode(sealed)


def test_sealed_text_round_trip() -> None:
    ring = KeyRing.parse(f"k1:{key()}")
    sealed = ring.seal_text("whsec_123")
    assert "whsec_123" not in sealed
    assert ring.open_text(sealed) == "whsec_123"


def test_merchant_webhook_signature_verifies_and_detects_tampering() -> None:
    header = sign_merchant_webhook("s3cret", b'{"a":1}')
    assert verify_merchant_webhook("s3cret", b'{"a":1}', header)
    assert not verify_merchant_webhook("s3cret", b'{"a":2}', header)
    assert not verify_merchant_webhook("other", b'{"a":1}', header)


def test_tiktok_signatures_match_the_documented_recipes() -> None:
    import hashlib
    import hmac

    body = b'{"type":1}'
    assert (
        tiktok_webhook_signature("key", "secret", body)
        == hmac.new(b"secret", b"key" + body, hashlib.sha256).hexdigest()
    )
    params = {"timestamp": "2", "app_key": "k", "sign": "x", "access_token": "t"}
    expected = hmac.new(
        b"s", b"s/p" + b"app_keyktimestamp2" + b"{}" + b"s", hashlib.sha256
    ).hexdigest()
    assert tiktok_api_signature("s", "/p", params, b"{}") == expected


def test_production_refuses_dev_secrets() -> None:
    with pytest.raises(ValidationError, match="OPS_API_KEY"):
        Settings(env="production")


def test_production_defaults_to_real_providers() -> None:
    secrets = {
        "ops_api_key": "o",
        "tiktok_app_secret": "t",
        "stripe_api_key": "sk",
        "stripe_webhook_secret": "wh",
        "shippo_api_key": "sh",
        "shippo_webhook_token": "tok",
        "codec_keys": f"p1:{key()}",
    }
    settings = Settings(env="production", shippo_api_base="", **secrets)
    assert settings.stripe_api_base is None
    assert settings.shippo_api_base is None
