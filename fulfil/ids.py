"""Every business id and key the engine builds: ids, workflow ids, idempotency and posting keys.

Provider idempotency keys and ledger posting keys come from business ids, never
from run ids, so a retried activity or a restarted worker presents the same key
and the provider (or the database) recognises the repeat.
"""

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


# --- workflow ids -------------------------------------------------------------


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


_RUN_OF = {
    "order-": "order_id",
    "shipment-": "order_id",
    "payout-": "payout_id",
    "deploy-": "deployment_id",
}


def business_ids(workflow_id: str) -> dict[str, str]:
    """The business id a workflow id names (the inverse of the functions above), for logs."""
    if workflow_id.startswith("payout-release"):
        return {}  # the schedule's runs are about many payouts
    for prefix, name in _RUN_OF.items():
        if workflow_id.startswith(prefix):
            return {name: workflow_id.removeprefix(prefix)}
    if workflow_id.startswith("tiktok-"):
        shop_id, _, tiktok_order_id = workflow_id.removeprefix("tiktok-").rpartition("-")
        if shop_id and tiktok_order_id:
            return {"tiktok_shop_id": shop_id, "tiktok_order_id": tiktok_order_id}
    return {}


# --- provider idempotency keys ----------------------------------------------


def charge_idempotency_key(order_id: str) -> str:
    return f"order:{order_id}:charge"


def refund_idempotency_key(order_id: str) -> str:
    return f"order:{order_id}:refund"


def cancel_payment_idempotency_key(order_id: str) -> str:
    return f"order:{order_id}:cancel-payment"


def email_idempotency_key(order_id: str, kind: str) -> str:
    return f"order:{order_id}:email:{kind}"


def label_metadata(order_id: str) -> str:
    """Shippo metadata on the order's shipment and label: finds them again after a crash."""
    return f"order:{order_id}"


# --- ledger and event keys ------------------------------------------------------


def charge_posting_key(order_id: str) -> str:
    return f"order:{order_id}:charge"


def refund_posting_key(order_id: str) -> str:
    return f"order:{order_id}:refund"


def order_event_key(order_id: str, event_type: str) -> str:
    """Dedupe key of an order event: recording the same event twice is a no-op."""
    return f"{order_id}:{event_type}"


def merchant_event_id(order_id: str, event_id: int) -> str:
    """The ``id`` of a merchant webhook, stable across redeliveries (merchants dedupe on it)."""
    return f"evt_{order_id}_{event_id}"


# --- payouts ---------------------------------------------------------------------


def payout_transfer_group(payout_id: str) -> str:
    """Stripe's ``transfer_group`` of the payout's charge and transfer."""
    return f"payout_{payout_id}"


def payout_charge_idempotency_key(payout_id: str) -> str:
    return f"payout:{payout_id}:charge"


def payout_transfer_idempotency_key(payout_id: str, attempt: int = 1) -> str:
    """``payout:{id}:transfer``; a payout released again after a reversed transfer gets
    ``:transfer:2`` and so on, so no transfer is ever made twice for one release."""
    key = f"payout:{payout_id}:transfer"
    return key if attempt == 1 else f"{key}:{attempt}"


def payout_reversal_idempotency_key(payout_id: str, attempt: int = 1) -> str:
    key = f"payout:{payout_id}:reversal"
    return key if attempt == 1 else f"{key}:{attempt}"


def payout_refund_idempotency_key(payout_id: str) -> str:
    return f"payout:{payout_id}:refund"


def payout_posting_key(payout_id: str, what: str) -> str:
    """Ledger posting of a payout: ``charge``, ``split``, ``transfer``, ``reversal``, ``refund``."""
    return f"payout:{payout_id}:{what}"


def connect_account_idempotency_key(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:connect-account"


PAYOUT_RELEASE_SCHEDULE = "payout-release"
