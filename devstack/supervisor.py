"""Child processes of the dev stack: each in its own process group, its output prefixed and logged.

Ctrl-C or SIGTERM stops them in reverse order (SIGTERM, then SIGKILL after a
timeout). This stays hand-written rather than a process runner (honcho,
supervisord, circus): the stack starts in stages gated on readiness probes
(Temporal answers, migrations applied, ``/readyz`` green, demo seeded through
the API), which a Procfile runner cannot express, and a supervisord daemon
with its own config would be one more thing to install and stop.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import httpx

from devstack import LOG_DIR, PROJECT_ROOT, Interrupted, StartupError
from devstack.console import COLOURS, emit

STOP_TIMEOUT = 10.0
STARTUP_TIMEOUT = 90.0


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
        self._colour = COLOURS[Child._colour_index % len(COLOURS)]
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
