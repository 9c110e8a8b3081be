"""Who may use the codec endpoints, and the CORS the Temporal UI needs to call them.

The UI decodes payloads by calling ``POST {codec endpoint}/decode`` from the browser. Three
ways in, checked in this order:

1. ``Authorization: Bearer <OPS_API_KEY>`` (the CLI, scripts);
2. ``Authorization: Bearer <access token>`` that the UI passes on (``codec.passAccessToken``)
   when it logs its users in with OIDC: a JWT signed by ``CODEC_OIDC_ISSUER``'s keys, for
   ``CODEC_OIDC_AUDIENCE``, not expired, whose ``CODEC_OIDC_OPS_CLAIM`` holds
   ``CODEC_OIDC_OPS_VALUE`` (a valid token without it is 403);
3. dev only (``CODEC_OPEN_TO_UI``, refused in production): no token, from one of the UI's
   origins. A browser cannot lie about its ``Origin``; curl can, which is why production
   never opens this door.

Anything else is 401; a merchant's key is 403 (payloads hold every merchant's data).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt

from fulfil.settings import Settings

log = logging.getLogger(__name__)

JWKS_SECONDS = 600.0
# An unknown key id makes the keys be fetched again, at most this often (key rotation).
JWKS_REFRESH_FLOOR = 30.0
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
CODEC_PREFIX = "/codec/"


class TokenRefused(Exception):
    """Not a token of the issuer (401), or one without the ops claim (``forbidden``: 403)."""

    def __init__(self, reason: str, *, forbidden: bool = False) -> None:
        super().__init__(reason)
        self.forbidden = forbidden


class OidcVerifier:
    """Verifies the UI's access tokens against the issuer's published keys (cached)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._issuer = settings.codec_oidc_issuer.rstrip("/")
        self._audience = settings.codec_oidc_audience or None
        self._jwks_url = settings.codec_oidc_jwks_url
        self._claim = settings.codec_oidc_ops_claim
        self._value = settings.codec_oidc_ops_value
        self._http = http
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._issuer)

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("not a JWT") from None
        kid = str(header.get("kid", ""))
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iss"], "verify_aud": self._audience is not None},
                leeway=30,
            )
        except jwt.PyJWTError as err:
            raise TokenRefused(f"token refused: {type(err).__name__}") from None
        if self._value and not _holds(claims.get(self._claim), self._value):
            raise TokenRefused(
                f"the token's {self._claim!r} has no {self._value!r}", forbidden=True
            )
        return claims

    async def _key(self, kid: str) -> jwt.PyJWK:
        now = time.monotonic()
        if kid in self._keys and now - self._fetched < JWKS_SECONDS:
            return self._keys[kid]
        async with self._lock:
            stale = time.monotonic() - self._fetched
            if (kid not in self._keys and stale >= JWKS_REFRESH_FLOOR) or stale >= JWKS_SECONDS:
                await self._fetch_keys()
        if kid not in self._keys:
            raise TokenRefused("signed with a key the issuer does not publish")
        return self._keys[kid]

    async def _fetch_keys(self) -> None:
        async with self._client() as http:
            url = self._jwks_url or await self._discover(http)
            try:
                response = await http.get(url)
                response.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(response.json()).keys
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as err:
                log.warning("codec: the issuer's keys could not be read", extra={"error": str(err)})
                raise TokenRefused("the issuer's keys could not be read") from None
        self._keys = {str(k.key_id): k for k in keys if k.key_id}
        self._fetched = time.monotonic()

    async def _discover(self, http: httpx.AsyncClient) -> str:
        try:
            response = await http.get(f"{self._issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            url = str(response.json()["jwks_uri"])
        except (httpx.HTTPError, ValueError, KeyError) as err:
            log.warning("codec: OIDC discovery failed", extra={"error": str(err)})
            raise TokenRefused("the issuer's discovery document could not be read") from None
        self._jwks_url = url
        return url

    def _client(self) -> Any:
        if self._http is not None:
            return _Borrowed(self._http)
        return httpx.AsyncClient(timeout=5.0)


class _Borrowed:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def __aenter__(self) -> httpx.AsyncClient:
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        return None


def _holds(claim: Any, value: str) -> bool:
    if isinstance(claim, str):
        return value in claim.split()
    if isinstance(claim, list):
        return value in claim
    return False


def cors_headers(origin: str | None, settings: Settings) -> list[tuple[bytes, bytes]]:
    """The CORS answer for one of the UI's origins (none for any other)."""
    headers = [(b"vary", b"Origin")]
    if origin and origin.rstrip("/") in settings.codec_origins():
        headers += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
        ]
    return headers


PREFLIGHT_HEADERS = [
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type, x-namespace"),
    (b"access-control-max-age", b"600"),
]
