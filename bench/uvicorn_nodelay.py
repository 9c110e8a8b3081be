"""``python -m uvicorn`` whose own listening socket (``--workers N``) gets TCP_NODELAY on every
connection, as the single-process server does.

    .venv/bin/python -m bench.uvicorn_nodelay api.app:app --workers 2 --port 8000

uvicorn 0.54 binds the socket it hands its worker processes with ``proto`` 0; accepted
sockets inherit it, and asyncio sets TCP_NODELAY only when ``proto`` is IPPROTO_TCP. Nagle
then meets the client's delayed ACK and every keep-alive response waits ~40 ms (measured here:
a two-line ASGI app answers 8,800 requests a second with one process, 90 with ``--workers 2``;
uvicorn issue #3149). The bench starts its multi-process API through this so that
``--api-workers 2`` measures the engine, not that. Re-opening the socket from its descriptor
reads the real protocol back from the kernel.
"""

from __future__ import annotations

import socket

import uvicorn.config
import uvicorn.main

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self: uvicorn.config.Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        return socket.socket(fileno=sock.detach())  # family, type and proto from the kernel
    return sock


uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]

if __name__ == "__main__":
    uvicorn.main.main()
