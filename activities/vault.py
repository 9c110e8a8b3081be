"""The token vault: a buyer's Cloudflare API token, kept only for the length of its deployment.

The API puts the token here, AES-GCM encrypted with ``VAULT_KEY`` (the deployment id is the
associated data, so a copy moved to another deployment does not open), under a random handle
with a TTL, and starts the workflow with the handle only. Activities open it just in time; the
deployment's last step deletes it. Redis keeps nothing on disk (``save ""``, no AOF), so the
token is never written anywhere: not PostgreSQL, not a workflow payload, not a log.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

PREFIX = "vault:cloudflare:"
NONCE_BYTES = 12


class TokenMissing(Exception):
    """The vault has no token for this handle (expired, deleted, or never put)."""


class TokenVault:
    def __init__(self, redis: Redis, key_b64: str) -> None:
        key = base64.b64decode(key_b64)
        if len(key) != 32:
            raise ValueError("VAULT_KEY must be base64 of 32 bytes")
        self._redis = redis
        self._aes = AESGCM(key)

    async def put(self, deployment_id: str, token: str, ttl_seconds: int) -> str:
        """Store the token; returns the handle the workflow carries."""
        handle = secrets.token_urlsafe(24)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = nonce + self._aes.encrypt(nonce, token.encode(), deployment_id.encode())
        await self._redis.set(PREFIX + handle, sealed, ex=max(1, ttl_seconds))
        return handle

    async def get(self, deployment_id: str, handle: str) -> str:
        found = await self._redis.get(PREFIX + handle)
        if not found:
            raise TokenMissing(handle)
        sealed = found if isinstance(found, bytes) else str(found).encode("latin-1")
        try:
            return self._aes.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], deployment_id.encode()
            ).decode()
        except InvalidTag:
            raise TokenMissing(handle) from None

    async def delete(self, handle: str) -> None:
        await self._redis.delete(PREFIX + handle)
