"""A lean HTTP/1.1 client for the benchmarks' open-loop sender (:func:`bench.load.open_loop`):
keep-alive over asyncio streams, about ten times less CPU per request than httpx, which matters
when the sender shares two cores with the server."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Idle connections older than this are not reused (uvicorn's keep-alive timeout is 5 s).
KEEP_ALIVE_SECONDS = 3.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpError(Exception):
    """No answer: refused, reset, timed out or not HTTP."""


class LeanHttp:
    """HTTP/1.1 with keep-alive over asyncio streams, for the open-loop sender: a request is
    bytes written, an answer a status line, headers and ``Content-Length`` bytes read. About
    ten times less CPU per request than httpx, which matters when the sender shares two cores
    with the server. Idle connections are reused; a new one is opened when none is idle."""

    def __init__(self, base_url: str, *, timeout: float = 10) -> None:
        url = urlsplit(base_url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 80
        self._timeout = timeout
        # (reader, writer, idle since): the most recently used on top.
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._all: set[asyncio.StreamWriter] = set()

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> Answer:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        connection = None
        try:
            async with asyncio.timeout(self._timeout):
                connection = self._reusable() or await asyncio.open_connection(
                    self._host, self._port
                )
                self._all.add(connection[1])
                reader, writer = connection
                writer.write(head + body)
                answer, keep = await self._read(reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            if connection is not None:
                self._drop(connection[1])
            raise HttpError(type(error).__name__) from error
        if keep:
            self._idle.append((reader, writer, time.monotonic()))
        else:
            self._drop(writer)
        return answer

    def _reusable(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """An idle connection the server has not closed: uvicorn closes one idle for 5 s
        (``--timeout-keep-alive``), and a request written into it would be lost."""
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < KEEP_ALIVE_SECONDS and not reader.at_eof():
                return reader, writer
            self._drop(writer)
        return None

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, keep, chunked = 0, True, False
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value == b"close":
                keep = False
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
        if not chunked:
            return Answer(status, await reader.readexactly(length)), keep
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return Answer(status, body), keep
            body += chunk[:-2]

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._all.discard(writer)
        writer.close()

    async def aclose(self) -> None:
        for writer in list(self._all):
            self._drop(writer)
        self._idle.clear()
