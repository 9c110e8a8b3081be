"""Where the engine may send merchant webhooks: URL rules and address checks against SSRF.

A merchant chooses its ``webhook_url``, so the worker would POST wherever a
merchant says: the cloud metadata service, Temporal's frontend, PostgreSQL,
Redis, the sandbox's control endpoints. The rules (CONTRACT.md):

- http(s) only (https in production), no credentials in the URL, no ``..``;
- the host must not resolve to a loopback, private, link-local, CGNAT,
  multicast, reserved, unspecified or cloud-metadata address, IPv4-mapped and
  numeric spellings (``0x7f000001``) included; checked when the URL is set and
  again at every delivery, against the address the delivery then connects to
  (DNS can change in between: rebinding);
- unless the URL starts with a prefix of ``WEBHOOK_URL_ALLOWLIST``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import posixpath
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")


class UrlRefused(ValueError):
    """The URL may not receive webhooks; the message says why (shown to the merchant)."""


@dataclass(frozen=True)
class Destination:
    """A checked URL: its host, port, and the addresses a delivery may connect to."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]
    allowlisted: bool


def forbidden_reason(address: IPAddress) -> str | None:
    """Why an address must not be called, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden_reason(address.ipv4_mapped)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "a shared address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


def _normalised(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable URL; raises :class:`UrlRefused`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise UrlRefused(f"not a valid URL: {err}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("must be an http or https URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlRefused("must not contain credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlRefused("must name a host")
    path = unquote(parts.path or "/")
    if ".." in path.split("/") or "\\" in path:
        raise UrlRefused("must not contain '..' path segments")
    return scheme, host, port or (443 if scheme == "https" else 80), path


def allowlisted(url: str, allowlist: list[str]) -> bool:
    """Whether ``url`` starts with one of the allowed prefixes (compared normalised)."""
    scheme, host, port, path = _normalised(url)
    for prefix in allowlist:
        try:
            p_scheme, p_host, p_port, p_path = _normalised(prefix)
        except UrlRefused:
            continue
        same_origin = (scheme, host, port) == (p_scheme, p_host, p_port)
        if same_origin and posixpath.normpath(path + "/x").startswith(p_path.rstrip("/") + "/"):
            return True
    return False


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a numeric host resolves to itself)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise UrlRefused(f"its host {host!r} does not resolve ({err})") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def check_destination(
    url: str,
    *,
    allowlist: list[str],
    require_https: bool,
    require_resolvable: bool = True,
) -> Destination:
    """Check ``url`` and where it leads; raises :class:`UrlRefused` with the reason.

    ``require_resolvable=False`` (when a merchant sets its URL) accepts a host
    that does not resolve yet: the delivery checks again.
    """
    scheme, host, port, _ = _normalised(url)
    if allowlisted(url, allowlist):
        return Destination(url, host, port, (), allowlisted=True)
    if require_https and scheme != "https":
        raise UrlRefused("must be an https URL")
    if host in METADATA_HOSTS:
        raise UrlRefused("must not point at a cloud metadata service")
    try:
        addresses = await resolve(host, port)
    except UrlRefused:
        if require_resolvable:
            raise
        return Destination(url, host, port, (), allowlisted=False)
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None:
            raise UrlRefused(f"its host resolves to {reason} ({address})")
    if not addresses:
        raise UrlRefused(f"its host {host!r} does not resolve")
    return Destination(url, host, port, tuple(str(a) for a in addresses), allowlisted=False)
