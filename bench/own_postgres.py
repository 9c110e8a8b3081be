"""A PostgreSQL server of the benchmark's own, on 127.0.0.1 and a free port, from the binaries
of the ``pgserver`` wheel, in a temporary directory deleted afterwards.

The machine's server is shared: other people's tests and benchmarks use it, and a heavy run
there meets "too many clients" that are nobody's fault. A chaos run also wants a server over
TCP (a proxy in front of it can be cut). ``postgres`` refuses to run as root, so as root it
runs as ``nobody``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from devstack.harness import free_port


def _binaries() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
        import pgserver  # the wheel ships a whole PostgreSQL installation

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


@contextmanager
def own_postgres(max_connections: int = 400, startup_timeout: float = 60) -> Iterator[str]:
    """A ``postgresql+psycopg://`` URL of a fresh server (database ``postgres``), stopped and
    deleted on exit. Durability is traded for speed (``fsync=off``): nothing here outlives
    the run."""
    bin_dir = _binaries()
    home = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
    user = "nobody" if os.geteuid() == 0 else None
    if user:
        shutil.chown(home, user)
    data = home / "data"
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
         "--encoding=utf8"],
        check=True, capture_output=True, user=user, timeout=120,
    )  # fmt: skip
    port = free_port()
    with (home / "postgres.log").open("ab") as log:
        server = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
             "-k", str(home), "-c", f"max_connections={max_connections}", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=log, stderr=subprocess.STDOUT, user=user,
        )  # fmt: skip
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"own PostgreSQL did not start; see {home}") from None
                time.sleep(0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)
