"""Webhook and API signatures, as each provider documents them."""

from __future__ import annotations

from fulfil.signatures import (
    sign_merchant_webhook,
    tiktok_api_signature,
    tiktok_webhook_signature,
    verify_merchant_webhook,
)


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
