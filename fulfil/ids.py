"""Business ids and the workflow ids built from them."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A time-ordered id: ``{prefix}_`` + 10 chars of milliseconds + 16 random chars."""
    millis = int(time.time() * 1000)
    return f"{prefix}_{_b32(millis, 10)}{_b32(secrets.randbits(80), 16)}"


def order_workflow_id(order_id: str) -> str:
    return f"order-{order_id}"


def shipment_workflow_id(order_id: str) -> str:
    return f"shipment-{order_id}"


def tiktok_workflow_id(shop_id: str, tiktok_order_id: str) -> str:
    return f"tiktok-{shop_id}-{tiktok_order_id}"


def payout_workflow_id(payout_id: str) -> str:
    return f"payout-{payout_id}"


def deploy_workflow_id(deployment_id: str) -> str:
    return f"deploy-{deployment_id}"


def charge_idempotency_key(order_id: str) -> str:
    return f"order:{order_id}:charge"


def refund_idempotency_key(order_id: str) -> str:
    return f"order:{order_id}:refund"
