"""Production refuses plain-http merchant webhook URLs (``require_https``), before any lookup;
the allow-list (the dev sandbox's prefix) is the only way around it."""

from __future__ import annotations

import pytest

from fulfil.outbound import UrlRefused, check_destination

PUBLIC = "93.184.216.34"  # a public address literal: no DNS needed


async def test_production_refuses_http() -> None:
    with pytest.raises(UrlRefused, match="https"):
        await check_destination(f"http://{PUBLIC}/hooks", allowlist=[], require_https=True)


async def test_https_and_dev_http_pass() -> None:
    for url, require_https in ((f"https://{PUBLIC}/hooks", True), (f"http://{PUBLIC}/h", False)):
        found = await check_destination(url, allowlist=[], require_https=require_https)
        assert found.addresses == (PUBLIC,)


async def test_the_allowlist_is_the_only_way_around_it() -> None:
    allowed = "http://127.0.0.1:8100/_sandbox/hooks/"
    found = await check_destination(f"{allowed}shop", allowlist=[allowed], require_https=True)
    assert found.allowlisted
    with pytest.raises(UrlRefused):
        await check_destination(
            "http://127.0.0.1:8100/_sandbox/reset", allowlist=[allowed], require_https=True
        )
