"""connect() speaks to a Temporal cluster or Temporal Cloud as the settings say: plaintext in
dev, mTLS or a private CA from the PEM files of TEMPORAL_TLS_*, an API key. Checked on the
arguments given to ``Client.connect``; no server is involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import TLSConfig

from fulfil.settings import Settings
from fulfil.temporal import connect


@pytest.fixture
def connect_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def fake_connect(target_host: str, **kwargs: Any) -> str:
        calls.append({"target_host": target_host, **kwargs})
        return "client"

    monkeypatch.setattr(Client, "connect", fake_connect)
    return calls


def pem(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(f"-----BEGIN {name}-----\n".encode())
    return str(path)


async def test_dev_connects_in_plaintext(connect_calls: list[dict[str, Any]]) -> None:
    await connect(Settings(env="test", temporal_address="temporal:7233", temporal_namespace="ns"))
    [call] = connect_calls
    assert call["target_host"] == "temporal:7233"
    assert call["namespace"] == "ns"
    assert call["tls"] is None  # with no API key either, the SDK connects without TLS
    assert call["api_key"] is None
    assert call["data_converter"].payload_codec is not None  # payloads stay encrypted


async def test_mtls_reads_the_client_certificate_key_and_ca(
    connect_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = Settings(
        env="test",
        temporal_tls_cert=pem(tmp_path, "CERT"),
        temporal_tls_key=pem(tmp_path, "KEY"),
        temporal_tls_ca=pem(tmp_path, "CA"),
    )
    await connect(settings)
    tls = connect_calls[0]["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == b"-----BEGIN CERT-----\n"
    assert tls.client_private_key == b"-----BEGIN KEY-----\n"
    assert tls.server_root_ca_cert == b"-----BEGIN CA-----\n"
    assert connect_calls[0]["api_key"] is None


async def test_a_private_ca_alone_is_server_tls(
    connect_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    await connect(Settings(env="test", temporal_tls_ca=pem(tmp_path, "CA")))
    tls = connect_calls[0]["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.server_root_ca_cert == b"-----BEGIN CA-----\n"
    assert tls.client_cert is None
    assert tls.client_private_key is None


async def test_an_api_key_is_passed_and_tls_left_to_the_sdk(
    connect_calls: list[dict[str, Any]],
) -> None:
    await connect(Settings(env="test", temporal_api_key="cloud-api-key"))
    assert connect_calls[0]["api_key"] == "cloud-api-key"
    # None: the SDK turns TLS on (system CAs) because an API key is set.
    assert connect_calls[0]["tls"] is None


async def test_settings_are_read_from_the_documented_variables(
    connect_calls: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV", "test")
    monkeypatch.setenv("TEMPORAL_TLS_CERT", pem(tmp_path, "CERT"))
    monkeypatch.setenv("TEMPORAL_TLS_KEY", pem(tmp_path, "KEY"))
    monkeypatch.setenv("TEMPORAL_API_KEY", "key-from-env")
    await connect(Settings(_env_file=None))
    call = connect_calls[0]
    assert call["tls"].client_cert == b"-----BEGIN CERT-----\n"
    assert call["api_key"] == "key-from-env"


def test_a_client_certificate_and_its_key_go_together() -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"):
        Settings(env="test", temporal_tls_cert="/run/secrets/temporal.pem")
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"):
        Settings(env="test", temporal_tls_key="/run/secrets/temporal.key")


async def test_a_missing_pem_file_fails_at_connect(
    connect_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = Settings(env="test", temporal_tls_ca=str(tmp_path / "absent.pem"))
    with pytest.raises(FileNotFoundError):
        await connect(settings)
    assert connect_calls == []
