"""The Temporal codec-server protocol: what the Temporal UI calls to show payloads, summaries
and failure messages decrypted (``POST /codec/decode``), and to encrypt what it sends
(``POST /codec/encode``).

Bodies are ``{"payloads": [{"metadata": {name: base64}, "data": base64}]}`` (protobuf JSON
of ``temporal.api.common.v1.Payloads``), answered in the same shape. Who may call is decided
before the body is read (``api.gate`` and ``api.codec_auth``): ops only.

Decoding shows what it can: a payload that is not encrypted (a search attribute, a patch
marker) comes back as it is, and so does one sealed with a key no longer in the ring, rather
than failing the whole page.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Annotated, Any

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Query, Request
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payload, Payloads

from api.deps import SettingsDep
from api.problems import Problem, problem_responses
from fulfil.codec import ENCODING, EncryptionCodec, KeyRing

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/codec",
    tags=["codec"],
    responses=problem_responses(
        HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN
    ),
)


# Standard or URL-safe alphabet, padding optional, never a length protobuf cannot decode.
BASE64 = r"^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$"
Base64 = Annotated[str, Field(pattern=BASE64)]


class PayloadJson(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: dict[Annotated[str, Field(max_length=256)], Base64] = Field(
        default_factory=dict, max_length=64, description="name → base64 value"
    )
    data: Base64 = Field(default="", description="base64")


class PayloadsJson(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payloads: list[PayloadJson] = Field(default_factory=list, max_length=1000)


# Sent by the Temporal UI (2.54: ``?preserveStorageRefs=true``); payloads here are never
# offloaded to external storage, so there are no references to keep.
PreserveStorageRefs = Annotated[
    bool,
    Query(
        alias="preserveStorageRefs",
        description="Sent by the Temporal UI; no payload is kept in external storage.",
    ),
]


def _parse(body: PayloadsJson) -> list[Payload]:
    try:
        parsed = json_format.ParseDict(body.model_dump(), Payloads())
    except json_format.ParseError as err:
        raise Problem(
            HTTPStatus.BAD_REQUEST,
            f"Not Temporal payloads: {str(err)[:200]}",
            slug="bad-payloads",
        ) from None
    return list(parsed.payloads)


def _answer(payloads: list[Payload]) -> PayloadsJson:
    shaped: dict[str, Any] = json_format.MessageToDict(Payloads(payloads=payloads))
    return PayloadsJson.model_validate({"payloads": shaped.get("payloads", [])})


@router.post(
    "/encode",
    summary="Encrypt payloads with the current key (ops)",
)
async def encode(
    body: PayloadsJson, settings: SettingsDep, _refs: PreserveStorageRefs = False
) -> PayloadsJson:
    codec = EncryptionCodec(KeyRing.parse(settings.codec_keys))
    return _answer(await codec.encode(_parse(body)))


@router.post(
    "/decode",
    summary="Decrypt payloads with any key of the ring (ops)",
)
async def decode(
    body: PayloadsJson, settings: SettingsDep, request: Request, _refs: PreserveStorageRefs = False
) -> PayloadsJson:
    ring = KeyRing.parse(settings.codec_keys)
    codec = EncryptionCodec(ring)
    out: list[Payload] = []
    unreadable = 0
    for payload in _parse(body):
        if payload.metadata.get("encoding", b"") != ENCODING:
            out.append(payload)
            continue
        try:
            out += await codec.decode([payload])
        except (ValueError, InvalidTag):
            unreadable += 1
            out.append(payload)
    if unreadable:
        log.warning(
            "codec: payloads sealed with a key not in the ring",
            extra={"count": unreadable, "namespace": request.headers.get("x-namespace", "")},
        )
    return _answer(out)
