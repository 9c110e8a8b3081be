"""The whole development stack in one foreground command: ``python -m devstack``.

Starts, in order: PostgreSQL (``DATABASE_URL`` when it answers, else an embedded
server under ``.data/pg``), Redis (``REDIS_URL`` or an embedded one under
``.data/redis``), the Temporal dev server (unless ``TEMPORAL_ADDRESS`` answers),
the migrations, the provider sandbox, the worker and the API; then seeds a demo
merchant through the public API and prints how to place an order.

Children's output is prefixed with their name and copied to
``.data/logs/<name>.log``. Ctrl-C or SIGTERM stops them in reverse order, and so
does any child dying on its own, with a non-zero exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from types import FrameType
from urllib.parse import urlsplit

import httpx

from devstack import (
    DATA_DIR,
    KEEP_ALIVE_SECONDS,
    LOG_DIR,
    PROJECT_ROOT,
    Interrupted,
    StartupError,
)
from devstack.banner import banner, describe_settings
from devstack.console import console_lock, say
from devstack.demo import DemoMerchant, seed_demo
from devstack.environment import prepare_environment
from devstack.services import (
    display_redis,
    display_url,
    ensure_postgres,
    ensure_redis,
    find_temporal_cli,
    stop_embedded,
)
from devstack.supervisor import Child, http_ok, wait_until
from devstack.temporal_server import (
    ensure_namespace,
    ensure_search_attributes,
    start_temporal,
    temporal_answers,
    temporal_ui_url,
)
from fulfil.settings import Settings, get_settings


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
            say(f"PostgreSQL at {display_url(s.database_url)} does not answer: embedded server")
        say(f"PostgreSQL: {display_url(database_url)}")
        self._check_stop()

        redis_url = ensure_redis(s.redis_url, allow_embedded=not production)
        if redis_url != s.redis_url:
            say(f"Redis at {display_redis(s.redis_url)} does not answer: embedded server")
        say(f"Redis: {display_redis(redis_url)}")
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
            temporal = start_temporal(
                cli,
                address,
                namespace=s.temporal_namespace,
                env=env,
                codec_endpoint=f"{s.api_base.rstrip('/')}/codec",
            )
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
            [py, "-m", "uvicorn", "--factory", "sandbox.app:create_app",
             "--host", sandbox_host, "--port", str(sandbox_port),
             "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS)],
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
            [py, "-m", "uvicorn", "api.app:app", "--host", api_host, "--port", str(api_port),
             "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS)],
            env,
        )  # fmt: skip
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
        with console_lock:  # unprefixed, so the commands copy-paste as they are
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
    generated = prepare_environment()
    try:
        settings = get_settings()
    except ValueError as exc:
        say(f"error: the settings are not valid: {exc}")
        return 1
    if generated:
        say(f"generated for this install: {', '.join(generated)} (see devstack/environment.py)")
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
