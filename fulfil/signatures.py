"""HMAC signatures of the webhooks the engine sends and receives, and of its TikTok API calls."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping


def sign_merchant_webhook(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """``Fulfil-Signature``: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_merchant_webhook(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance:
        return False
    expected = sign_merchant_webhook(secret, body, t).split("v1=", 1)[1]
    return same_secret(parts.get("v1", ""), expected)


def tiktok_webhook_signature(app_key: str, app_secret: str, body: bytes) -> str:
    """TikTok Shop: hex HMAC-SHA256(key=app secret, msg=app key + raw body)."""
    return hmac.new(app_secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def tiktok_api_signature(app_secret: str, path: str, params: Mapping[str, str], body: bytes) -> str:
    """TikTok Shop API request ``sign`` (query parameter), lowercase hex.

    HMAC-SHA256(key=app secret, msg=app secret + path + ``key+value`` of every
    query parameter except ``sign`` and ``access_token``, sorted by key, + raw
    body + app secret). ``path`` is the API path without host or query, e.g.
    ``/order/202309/orders``; ``body`` is empty for a GET.
    """
    pairs = "".join(
        f"{key}{params[key]}" for key in sorted(params) if key not in ("sign", "access_token")
    )
    message = app_secret.encode() + path.encode() + pairs.encode() + body + app_secret.encode()
    return hmac.new(app_secret.encode(), message, hashlib.sha256).hexdigest()


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a credential, as bytes (any text, never an exception)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def sign_stripe_payload(secret: str, body: bytes, timestamp: int) -> str:
    """``Stripe-Signature``: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_stripe_signature(
    secret: str, body: bytes, header: str, *, tolerance: int, now: float | None = None
) -> bool:
    """Stripe's scheme (any ``v1`` may match), with the timestamp within ``tolerance`` seconds
    of now in both directions: an event dated in the future is refused too."""
    if not header or not header.isascii():
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            candidates.append(value)
    current = time.time() if now is None else now
    if timestamp is None or not candidates or abs(current - timestamp) > tolerance:
        return False
    expected = sign_stripe_payload(secret, body, timestamp).split("v1=", 1)[1].encode()
    return any(hmac.compare_digest(expected, candidate.encode()) for candidate in candidates)
