"""A tiny real HTTP server standing in for a worker agent's `/readyz` (switchable status).

Runs in the test's event loop on a free loopback port; any path ending in `/readyz` answers the
current status with a JSON reason; everything else is 404. Keep-alive is honoured (the control
plane's probe client reuses connections), and `hits` counts probes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson

from tests.support.ports import free_port


class ReadyzServer:
    def __init__(self, status: int = 200, reason: str = "ready") -> None:
        self.status = status
        self.reason = reason
        self.delay_s = 0.0
        self.hits = 0
        self.port = free_port()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, status: int, reason: str | None = None) -> None:
        self.status = status
        self.reason = reason or ("ready" if status == 200 else "engine not ready")

    async def start(self) -> ReadyzServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line = head.split(b"\r\n", 1)[0].decode()
                path = request_line.split(" ")[1] if " " in request_line else "/"
                if path.endswith("/readyz"):
                    self.hits += 1
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    status = self.status
                    body = orjson.dumps({"ready": status == 200, "reason": self.reason})
                else:
                    status, body = 404, b'{"error": "not found"}'
                writer.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def readyz_server(status: int = 200) -> AsyncIterator[ReadyzServer]:
    server = await ReadyzServer(status).start()
    try:
        yield server
    finally:
        await server.stop()
