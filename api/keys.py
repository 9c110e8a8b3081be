"""Merchant API keys and webhook secrets: generated here, keys stored only as sha256."""

from __future__ import annotations

import hashlib
import secrets

from fulfil.ids import new_id

API_KEY_PREFIX = "fk_"
WEBHOOK_SECRET_PREFIX = "whsec_"
DISPLAY_PREFIX_LENGTH = 12


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """What is stored and looked up (a 256-bit random key needs no slow hash)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def display_prefix(api_key: str) -> str:
    """Enough of the key to tell keys apart in a dashboard, too little to use."""
    return api_key[:DISPLAY_PREFIX_LENGTH]


def new_key_id() -> str:
    return new_id("key")
