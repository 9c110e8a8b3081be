"""The payload codec: AES-GCM with a key ring that rotates."""

from __future__ import annotations

import base64
import os

import pytest
from temporalio.api.common.v1 import Payload

from fulfil.codec import EncryptionCodec, KeyRing


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


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


async def test_unencrypted_payloads_are_refused() -> None:
    """Finding: a plain-JSON signal sent with the temporal CLI was believed."""
    ring = KeyRing.parse(f"k1:{key()}")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"payment_intent_id":"pi_1"}')
    [refused] = await EncryptionCodec(ring).decode([plain])
    assert refused.metadata["encoding"] == b"binary/refused-unencrypted"
    assert refused.data == b""
    # An encoding let through on purpose passes untouched.
    allowed = EncryptionCodec(ring, allow_plain=frozenset({b"json/plain"}))
    assert (await allowed.decode([plain]))[0] == plain


async def test_a_refused_payload_cannot_be_converted() -> None:
    from temporalio.converter import DataConverter

    ring = KeyRing.parse(f"k1:{key()}")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a":1}')
    [refused] = await EncryptionCodec(ring).decode([plain])
    with pytest.raises(KeyError, match="Unknown payload encoding"):
        DataConverter.default.payload_converter.from_payloads([refused])
