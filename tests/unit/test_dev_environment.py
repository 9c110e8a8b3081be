"""The dev stack generates a key ring per install and allows only the sandbox's hooks."""

from __future__ import annotations

from pathlib import Path

from devstack.environment import dev_codec_keys, prepare_environment
from fulfil.settings import Settings


def test_a_key_ring_per_install_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "codec_keys"
    ring = dev_codec_keys(path)
    assert dev_codec_keys(path) == ring  # the same install keeps its ring
    assert path.stat().st_mode & 0o077 == 0
    assert dev_codec_keys(tmp_path / "other") != ring
    Settings(env="dev", codec_keys=ring)  # accepted outside tests


def test_environment_defaults_do_not_override_what_is_set(tmp_path: Path) -> None:
    env = {"CODEC_KEYS": "k9:abc", "SANDBOX_BASE": "http://127.0.0.1:9100"}
    assert prepare_environment(env) == [
        "WEBHOOK_URL_ALLOWLIST",
        "CODEC_OPEN_TO_UI",
        "PAYOUT_HOLD_SECONDS",
        "PAYOUT_RUN_INTERVAL_SECONDS",
    ]
    assert env["CODEC_KEYS"] == "k9:abc"
    assert env["WEBHOOK_URL_ALLOWLIST"] == "http://127.0.0.1:9100/_sandbox/hooks/"


def test_the_dev_ui_is_given_the_codec_endpoint() -> None:
    from devstack.temporal_server import temporal_server_args

    argv = temporal_server_args(
        "temporal",
        "127.0.0.1:7233",
        db_file=Path("/tmp/t.db"),
        codec_endpoint="http://127.0.0.1:8000/codec",
    )
    assert argv[argv.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8000/codec"
    assert argv[argv.index("--ui-port") + 1] == "8233"
