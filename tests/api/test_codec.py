"""The codec endpoints as the Temporal UI and ops use them: the codec-server protocol, key
rotation, CORS for the UI's origin, and who may decode (the ops key, the UI's OIDC access
token with the ops claim, and in dev the UI's origin without a token; nobody else).

The OIDC issuer is a real HTTP server in this process publishing its discovery document and
its keys; tokens are signed with its RSA key (and, to be refused, with another one).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.api.common.v1 import Payload

from api.app import create_app
from devstack.harness import in_process, serve_in_thread
from fulfil.codec import EncryptionCodec, KeyRing
from fulfil.settings import Settings
from tests.api.conftest import MerchantActor, assert_problem, make_merchant

UI = "http://127.0.0.1:8233"
AUDIENCE = "temporal-ui"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key() -> str:
    return b64(os.urandom(32))


class Issuer:
    """An OIDC provider: discovery, JWKS, and tokens signed with its key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.url = ""
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    def app(self) -> Starlette:
        async def discovery(_: Any) -> JSONResponse:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/keys"})

        async def keys(_: Any) -> JSONResponse:
            return JSONResponse(self.jwks)

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/keys", keys),
            ]
        )

    def token(self, *, signer: Any = None, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "ops-person",
            "iat": now,
            "exp": now + 300,
            "groups": ["fulfil-ops"],
            **claims,
        }
        return jwt.encode(body, signer or self.key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    with serve_in_thread(found.app()) as url:
        found.url = url
        yield found


@pytest.fixture(scope="module")
def old_and_new() -> tuple[str, str]:
    return f"old:{key()}", f"new:{key()}"


@pytest.fixture(scope="module")
def codec_settings(
    api_settings: Settings, issuer: Issuer, old_and_new: tuple[str, str]
) -> Settings:
    old, new = old_and_new
    return api_settings.model_copy(
        update={
            "codec_keys": f"{new},{old}",  # rotated: the new key first, the old one kept
            "codec_oidc_issuer": issuer.url,
            "codec_oidc_audience": AUDIENCE,
        }
    )


@pytest.fixture(scope="module")
async def codec_api(codec_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(create_app(codec_settings)) as c:
        yield c


@pytest.fixture(scope="module")
async def dev_codec_api(codec_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """As `make run` configures it: the UI's origin may decode without a token."""
    settings = codec_settings.model_copy(update={"codec_open_to_ui": True})
    async with in_process(create_app(settings)) as c:
        yield c


@pytest.fixture
def ops_auth(codec_settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {codec_settings.ops_api_key}"}


def wire(payloads: list[Payload]) -> dict[str, Any]:
    return {
        "payloads": [
            {"metadata": {k: b64(v) for k, v in p.metadata.items()}, "data": b64(p.data)}
            for p in payloads
        ]
    }


def unwire(body: dict[str, Any]) -> list[Payload]:
    return [
        Payload(
            metadata={k: base64.b64decode(v) for k, v in p["metadata"].items()},
            data=base64.b64decode(p.get("data", "")),
        )
        for p in body["payloads"]
    ]


PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"order_id":"ord_1","total":5900}')


async def test_decode_speaks_the_protocol_and_reads_old_and_new_keys(
    codec_api: httpx.AsyncClient, ops_auth: dict[str, str], old_and_new: tuple[str, str]
) -> None:
    old, new = old_and_new
    by_old = await EncryptionCodec(KeyRing.parse(old)).encode([PLAIN])
    by_new = await EncryptionCodec(KeyRing.parse(new)).encode([PLAIN])
    by_stranger = await EncryptionCodec(KeyRing.parse(f"gone:{key()}")).encode([PLAIN])
    search_attribute = Payload(metadata={"encoding": b"json/plain"}, data=b'"paid"')
    r = await codec_api.post(
        "/codec/decode",
        json=wire([*by_old, *by_new, search_attribute, *by_stranger]),
        headers={**ops_auth, "X-Namespace": "default"},
    )
    assert r.status_code == 200, r.text
    decoded = unwire(r.json())
    assert decoded[0] == PLAIN  # sealed with the old key: still readable
    assert decoded[1] == PLAIN
    assert decoded[2] == search_attribute  # not encrypted: shown as it is
    assert decoded[3] == by_stranger[0]  # a key no longer in the ring: left sealed


async def test_encode_seals_with_the_new_key(
    codec_api: httpx.AsyncClient, ops_auth: dict[str, str], old_and_new: tuple[str, str]
) -> None:
    old, new = old_and_new
    r = await codec_api.post("/codec/encode", json=wire([PLAIN]), headers=ops_auth)
    assert r.status_code == 200, r.text
    [sealed] = unwire(r.json())
    assert sealed.metadata["encryption-key-id"] == b"new"
    assert b"ord_1" not in sealed.data
    assert (await EncryptionCodec(KeyRing.parse(new)).decode([sealed]))[0] == PLAIN
    with pytest.raises(ValueError, match="unknown encryption key"):
        await EncryptionCodec(KeyRing.parse(old)).decode([sealed])


async def test_the_uis_oidc_token_with_the_ops_claim_decodes(
    codec_api: httpx.AsyncClient, issuer: Issuer
) -> None:
    sealed = await EncryptionCodec(KeyRing.parse(f"x:{key()}")).encode([PLAIN])
    r = await codec_api.post(
        "/codec/decode",
        json=wire(sealed),
        headers={"Authorization": f"Bearer {issuer.token()}", "Origin": UI},
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == UI


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("expired", 401),
        ("another_audience", 401),
        ("another_issuer", 401),
        ("signed_by_another_key", 401),
        ("unknown_key_id", 401),
        ("not_a_jwt", 401),
        ("no_ops_group", 403),
    ],
)
async def test_other_tokens_are_refused(
    codec_api: httpx.AsyncClient, issuer: Issuer, case: str, status: int
) -> None:
    token = {
        "expired": lambda: issuer.token(exp=int(time.time()) - 3600),
        "another_audience": lambda: issuer.token(aud="someone-else"),
        "another_issuer": lambda: issuer.token(iss="https://evil.example.com"),
        "signed_by_another_key": lambda: issuer.token(signer=issuer.other),
        "unknown_key_id": lambda: issuer.token(signer=issuer.other, kid="k9"),
        "not_a_jwt": lambda: "definitely-not-a-token",
        "no_ops_group": lambda: issuer.token(groups=["support"]),
    }[case]()
    r = await codec_api.post(
        "/codec/decode", json=wire([PLAIN]), headers={"Authorization": f"Bearer {token}"}
    )
    assert_problem(r, status)


async def test_a_merchant_key_is_403(
    codec_api: httpx.AsyncClient, ops_auth: dict[str, str]
) -> None:
    merchant: MerchantActor = await make_merchant(codec_api, ops_auth)
    r = await codec_api.post("/codec/decode", json=wire([PLAIN]), headers=merchant.auth)
    assert_problem(r, 403)


async def test_without_a_token_production_says_401_even_from_the_ui(
    codec_api: httpx.AsyncClient,
) -> None:
    r = await codec_api.post("/codec/decode", json=wire([PLAIN]), headers={"Origin": UI})
    assert_problem(r, 401)
    # The UI can read the refusal (CORS headers on errors too).
    assert r.headers["access-control-allow-origin"] == UI


async def test_dev_lets_the_ui_origin_decode_and_nobody_else(
    dev_codec_api: httpx.AsyncClient, codec_settings: Settings
) -> None:
    sealed = await EncryptionCodec(KeyRing.parse(codec_settings.codec_keys)).encode([PLAIN])
    # As the UI calls it (2.54 adds ?preserveStorageRefs=true; later UIs may add more).
    for query in ("", "?preserveStorageRefs=true", "?preserveStorageRefs=true&someday=1"):
        r = await dev_codec_api.post(
            f"/codec/decode{query}", json=wire(sealed), headers={"Origin": UI}
        )
        assert r.status_code == 200, r.text
        assert unwire(r.json()) == [PLAIN]
    for headers in ({}, {"Origin": "http://evil.example.com"}):
        r = await dev_codec_api.post("/codec/decode", json=wire(sealed), headers=headers)
        assert_problem(r, 401)
        assert "access-control-allow-origin" not in r.headers


async def test_preflight_answers_the_ui_origin_only(codec_api: httpx.AsyncClient) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-namespace",
    }
    r = await codec_api.options("/codec/decode", headers={**ask, "Origin": UI})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == UI
    assert "x-namespace" in r.headers["access-control-allow-headers"]
    assert "POST" in r.headers["access-control-allow-methods"]
    r = await codec_api.options(
        "/codec/decode", headers={**ask, "Origin": "http://evil.example.com"}
    )
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers


async def test_bad_bodies_are_problems(
    codec_api: httpx.AsyncClient, ops_auth: dict[str, str]
) -> None:
    r = await codec_api.post(
        "/codec/decode",
        json={"payloads": [{"metadata": {"encoding": "%%%"}, "data": ""}]},
        headers=ops_auth,
    )
    assert "payloads" in str(assert_problem(r, 422)["errors"])
    r = await codec_api.post("/codec/decode", json={"nope": 1}, headers=ops_auth)
    assert_problem(r, 422)
    r = await codec_api.post(
        "/codec/decode",
        content=b"x" * (5 * 1024 * 1024),
        headers={**ops_auth, "Content-Type": "application/json"},
    )
    assert_problem(r, 413)


def test_production_refuses_an_open_codec() -> None:
    with pytest.raises(ValueError, match="CODEC_OPEN_TO_UI"):
        Settings(
            env="production",
            codec_keys=f"k:{key()}",
            codec_open_to_ui=True,
            _env_file=None,  # type: ignore[call-arg]
        )
