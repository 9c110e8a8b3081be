"""AES-GCM payload codec with a key ring, and the data converter built on it.

Every payload (inputs, results, signals, memos, failure messages) leaves the
process encrypted. The key id travels in the payload metadata, so rotating the
ring (a new first key, old keys still listed) keeps old histories readable.

Coming in, a payload that is not encrypted with a key of the ring is refused:
anyone who can reach the Temporal frontend (the ``temporal`` CLI, the UI's
write actions) could otherwise send a plain-JSON signal (a forged
``payment_succeeded``). A refused payload decodes to one no converter can read,
so the SDK drops that signal (or fails that update or query) and the run goes
on. Search attributes never pass through a codec, so they are not affected;
``allow_plain`` names any other encoding let through on purpose.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
# What a refused payload becomes: no payload converter reads this encoding.
REFUSED_ENCODING = b"binary/refused-unencrypted"
NONCE_BYTES = 12

log = logging.getLogger(__name__)


class KeyRing:
    """Named AES-256 keys; the first one encrypts, all of them decrypt."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("the key ring needs at least one key")
        for key_id, key in keys:
            if len(key) != 32:
                raise ValueError(f"key {key_id!r} must be 32 bytes, got {len(key)}")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self.current_id = keys[0][0]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """Parse ``"k2:<base64>,k1:<base64>"``."""
        keys: list[tuple[str, bytes]] = []
        for part in spec.split(","):
            key_id, sep, encoded = part.strip().partition(":")
            if not sep or not key_id:
                raise ValueError("codec keys are 'key_id:base64' separated by commas")
            keys.append((key_id, base64.b64decode(encoded)))
        return cls(keys)

    def encrypt(self, plaintext: bytes, associated: bytes = b"") -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current_id].encrypt(nonce, plaintext, associated)
        return self.current_id, nonce + sealed

    def decrypt(self, key_id: str, blob: bytes, associated: bytes = b"") -> bytes:
        aes = self._keys.get(key_id)
        if aes is None:
            raise ValueError(f"unknown encryption key id {key_id!r}")
        return aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated)

    def seal_text(self, text: str) -> str:
        """Encrypt a short secret for storage: ``key_id:base64``."""
        key_id, blob = self.encrypt(text.encode())
        return f"{key_id}:{base64.urlsafe_b64encode(blob).decode()}"

    def open_text(self, sealed: str) -> str:
        key_id, _, encoded = sealed.partition(":")
        return self.decrypt(key_id, base64.urlsafe_b64decode(encoded)).decode()


class EncryptionCodec(PayloadCodec):
    def __init__(self, ring: KeyRing, *, allow_plain: frozenset[bytes] = frozenset()) -> None:
        self._ring = ring
        self._allow_plain = allow_plain

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            key_id, blob = self._ring.encrypt(p.SerializeToString())
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, "encryption-key-id": key_id.encode()},
                    data=blob,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            encoding = p.metadata.get("encoding", b"")
            if encoding != ENCODING:
                if encoding in self._allow_plain:
                    out.append(p)
                else:
                    log.warning(
                        "unencrypted payload refused",
                        extra={"encoding": encoding.decode(errors="replace")[:64]},
                    )
                    out.append(Payload(metadata={"encoding": REFUSED_ENCODING}))
                continue
            key_id = p.metadata.get("encryption-key-id", b"").decode()
            decoded = Payload()
            decoded.ParseFromString(self._ring.decrypt(key_id, p.data))
            out.append(decoded)
        return out


def data_converter(ring: KeyRing) -> DataConverter:
    """Pydantic JSON payloads, encrypted; failure messages and stacks encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
