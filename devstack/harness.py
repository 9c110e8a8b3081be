"""What tests and benchmarks use to bring up pieces of the engine in one process: free
ports, a fresh migrated database, ASGI apps (the API, the sandbox) served by uvicorn in a
thread, and an app called in process with its lifespan running."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from psycopg import sql
from sqlalchemy import URL, make_url

from devstack import KEEP_ALIVE_SECONDS
from devstack.services import ensure_postgres


def loopback_socket(port: int = 0) -> socket.socket:
    """A bound loopback socket (a free port by default), so URLs are known before serving."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextmanager
def serve_in_thread(
    app: Any, sock: socket.socket | None = None, *, startup_timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``sock`` (a fresh loopback port by default)."""
    sock = sock or loopback_socket()
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_keep_alive=KEEP_ALIVE_SECONDS
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@asynccontextmanager
async def in_process(
    app: Any, *, client: tuple[str, int] = ("127.0.0.1", 123)
) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan running, and a client calling it in process at
    ``http://api`` with a 30 s timeout (``client`` is the caller's address the app sees)."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=client),
            base_url="http://api",
            timeout=30.0,
        ) as c,
    ):
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_database(server_url: str, prefix: str, data_dir: Path) -> Iterator[str]:
    """A new database, migrated to head, dropped afterwards: on the server of ``server_url``
    when it answers, else on an embedded one under ``data_dir``."""
    from db.migrate import upgrade

    server = make_url(ensure_postgres(server_url, data_dir))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(server), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(_libpq(server), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
