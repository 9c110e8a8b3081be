"""What the dev stack prints: the effective settings (secrets masked), then URLs, keys and curls."""

from __future__ import annotations

import json

from devstack import LOG_DIR
from devstack.demo import DEMO_FILE, DEMO_HOOK_NAME, DEMO_ORDER, DemoMerchant
from devstack.services import display_redis, display_url
from fulfil.settings import Settings

_SECRET_WORDS = ("secret", "api_key", "token", "codec_keys")


def describe_settings(settings: Settings) -> list[str]:
    """``NAME=value`` for every setting; a secret shows only while it is the dev default."""
    lines = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if any(word in name for word in _SECRET_WORDS) and value != field.default:
            shown = "<set>"
        elif name == "database_url":
            shown = display_url(value)
        elif name == "redis_url":
            shown = display_redis(value)
        else:
            shown = "" if value is None else str(value)
        lines.append(f"{name.upper()}={shown}")
    return lines


def banner(
    *,
    settings: Settings,
    database_url: str,
    redis_url: str,
    temporal_address: str,
    temporal_ui: str,
    demo: DemoMerchant | None,
) -> str:
    api = settings.api_base.rstrip("/")
    ops_key = settings.ops_api_key
    dev_ops_key = Settings.model_fields["ops_api_key"].default
    ops_shown = ops_key if ops_key == dev_ops_key else "<OPS_API_KEY>"
    lines = [
        "",
        "=" * 72,
        "fulfil dev stack is up",
        f"  API             {api}",
        f"  OpenAPI docs    {api}/docs",
        f"  Temporal UI     {temporal_ui}   (gRPC {temporal_address})",
        f"  Sandbox         {settings.sandbox_base}   (ledger: /_sandbox/ledger)",
        f"  Merchant hooks  {settings.sandbox_base}/_sandbox/hooks/{DEMO_HOOK_NAME}",
        f"  PostgreSQL      {display_url(database_url)}",
        f"  Redis           {display_redis(redis_url)}",
        f"  Logs            {LOG_DIR}/<name>.log",
        "",
        f"  Ops key         {ops_shown}",
    ]
    if demo is None:
        lines += ["  Demo merchant   (not seeded: see the message above)", "=" * 72, ""]
        return "\n".join(lines)
    lines += [
        f"  Demo merchant   {demo.merchant_id}",
        f"  Merchant key    {demo.api_key}      (kept in {DEMO_FILE})",
        "",
        "Place an order:",
        "",
        f"  KEY={demo.api_key}",
        f"  ORDER_ID=$(curl -sS -X POST {api}/api/v1/orders \\",
        '    -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\',
        "    -H \"Idempotency-Key: $(uuidgen 2>/dev/null || python3 -c 'import uuid; "
        "print(uuid.uuid4())')\" \\",
        f"    -d '{json.dumps(DEMO_ORDER)}' \\",
        "    | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"order_id\"])'"
        '); echo "$ORDER_ID"',
        "",
        "Read it back:",
        "",
        f'  curl -sS {api}/api/v1/orders/$ORDER_ID -H "Authorization: Bearer $KEY"',
        "",
    ]
    if demo.tiktok_shop_id:
        tiktok_order = {
            "shop_id": demo.tiktok_shop_id,
            "items": [{"sku": "CANDLE-1", "quantity": 2, "price": 1500}],
            "address": DEMO_ORDER["shipping_address"],
        }
        lines += [
            "A TikTok Shop order (the sandbox sends its signed webhook):",
            "",
            f"  curl -sS -X POST {settings.sandbox_base}/_sandbox/tiktok/orders \\",
            f"    -H 'Content-Type: application/json' -d '{json.dumps(tiktok_order)}'",
            f'  curl -sS "{api}/api/v1/orders?source=tiktok" -H "Authorization: Bearer $KEY"',
            "",
            "Parcels move with the sandbox clock "
            f"({settings.sandbox_clock_pace:g} sandbox s per real s); to jump ahead:",
            "",
            f"  curl -sS -X POST {settings.sandbox_base}/_sandbox/clock/advance \\",
            "    -H 'Content-Type: application/json' -d '{\"seconds\": 259200}'",
            "",
        ]
    lines += [
        "A marketplace checkout paid out after its hold, and a package deployed into a",
        'buyer\'s Cloudflare account step by step: README.md, "Trying it".',
        "",
        "Ctrl-C stops everything.",
        "=" * 72,
        "",
    ]
    return "\n".join(lines)
