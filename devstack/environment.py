"""What the dev stack puts in the environment before anything reads settings.

- ``CODEC_KEYS``: a key ring generated once per install and kept in
  ``.data/codec_keys`` (mode 600), unless set. The public test key is refused
  outside tests, so two installs never share a key that is printed anywhere.
- ``WEBHOOK_URL_ALLOWLIST``: only the sandbox's ``/_sandbox/hooks/`` prefix,
  unless set, so the demo merchant's webhooks reach the sandbox's recorder on
  loopback while any other private address stays refused.
- ``CODEC_OPEN_TO_UI=true``, unless set: the Temporal UI that ``make run`` starts (its
  origin, ``CODEC_CORS_ORIGINS``) decodes payloads through ``/codec`` with no login; any
  other caller still needs the ops key (production refuses this setting).
- ``PAYOUT_HOLD_SECONDS=60`` and ``PAYOUT_RUN_INTERVAL_SECONDS=15``, unless set: a demo
  payout is released within minutes instead of three days (production keeps 259200 / 900).
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from pathlib import Path

from devstack import DATA_DIR

CODEC_KEYS_FILE = DATA_DIR / "codec_keys"
DEFAULT_SANDBOX_BASE = "http://127.0.0.1:8100"
DEMO_PAYOUTS = {"PAYOUT_HOLD_SECONDS": "60", "PAYOUT_RUN_INTERVAL_SECONDS": "15"}


def dev_codec_keys(path: Path = CODEC_KEYS_FILE) -> str:
    """The install's key ring, created on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    ring = f"dev{time.strftime('%Y%m%d')}:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(ring + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return ring


def prepare_environment(environ: dict[str, str] | None = None) -> list[str]:
    """Fill in what the dev stack generates; returns the names it set."""
    env = os.environ if environ is None else environ
    set_here = []
    if not env.get("CODEC_KEYS"):
        env["CODEC_KEYS"] = dev_codec_keys()
        set_here.append("CODEC_KEYS")
    if "WEBHOOK_URL_ALLOWLIST" not in env:
        sandbox = env.get("SANDBOX_BASE", DEFAULT_SANDBOX_BASE).rstrip("/")
        env["WEBHOOK_URL_ALLOWLIST"] = f"{sandbox}/_sandbox/hooks/"
        set_here.append("WEBHOOK_URL_ALLOWLIST")
    if "CODEC_OPEN_TO_UI" not in env:
        env["CODEC_OPEN_TO_UI"] = "true"
        set_here.append("CODEC_OPEN_TO_UI")
    for name, demo_value in DEMO_PAYOUTS.items():
        if name not in env:
            env[name] = demo_value
            set_here.append(name)
    return set_here
