"""A TCP proxy a benchmark can cut: the engine talks to PostgreSQL or Redis through it, and
cutting it is an outage of that server for the engine only (the machine's server, which other
people's tests use, is never touched).

It runs its own event loop in a thread, so a busy or blocked benchmark loop does not slow the
bytes down. Two kinds of outage:

- ``cut("refuse")``: the port is closed and every connection through it reset, as when the
  server is down (connects are refused at once);
- ``cut("blackhole")``: every connection through it is reset, then new ones are accepted and
  never answered, as when the server hangs or the network drops packets.

``restore()`` forwards again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Literal

from devstack.harness import free_port

Outage = Literal["refuse", "blackhole"]
CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, name: str = "proxy") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.name = name
        self.outage: Outage | None = None
        self.connections = 0  # accepted since start
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"tcp-proxy-{name}", daemon=True
        )
        self._thread.start()
        self._call(self._listen())

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=15)

    def cut(self, outage: Outage = "refuse") -> None:
        self._call(self._cut(outage))

    def restore(self) -> None:
        self._call(self._restore())

    def close(self) -> None:
        self._call(self._cut("refuse"))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # --- in the proxy's loop ----------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _cut(self, outage: Outage) -> None:
        self.outage = outage
        if outage == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _restore(self) -> None:
        for writer in list(self._open):  # connections held by a blackhole
            writer.transport.abort()
        self._open.clear()
        self.outage = None
        if self._server is None:
            await self._listen()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        if self.outage is not None:  # blackhole: hold it, say nothing
            with contextlib.suppress(ConnectionError, OSError):
                while await reader.read(CHUNK):
                    pass
            self._open.discard(writer)
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            self._open.discard(writer)
            writer.transport.abort()
            return
        self._open.add(upstream)
        await asyncio.gather(self._pipe(reader, upstream), self._pipe(upstream_reader, writer))
        self._open.discard(writer)
        self._open.discard(upstream)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if self.outage is None:
                writer.close()  # the other side hung up: so do we
            else:
                writer.transport.abort()
