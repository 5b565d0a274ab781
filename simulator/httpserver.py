"""A lean HTTP/1.1 server: asyncio protocol (uvloop) + httptools parser, just what an engine needs.

Why not uvicorn + ASGI: an engine imitation needs the connection itself. A client that goes away
must cancel its request at once, wherever it is (queued, hung, streaming): here `connection_lost`
cancels the request's task directly, with no watcher task per request. A dying engine must cut a
stream without finishing it: here `abort()` closes the socket, where an ASGI app can only raise
and have the server log an error. Its speed, next to a bare app on uvicorn sending the same
bytes, is measured by scripts/bench/simulator_throughput.py (figures in docs/simulator.md).

Supported: keep-alive, pipelined requests (answered in order), `Expect: 100-continue`, request
bodies with content-length or chunked encoding (httptools decodes both), fixed-length responses
and chunked streams with write flow control, idle keep-alive timeout, graceful close.

    handler(request, exchange) -> awaitable
        exchange.send(status, body)                 one whole response
        exchange.start_stream(); write(chunk)...;   a chunked response, one chunk per write
        exchange.end_stream() / exchange.abort()
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import httptools

from simulator.errors import ClientDisconnected

log = logging.getLogger("simulator.http")

MAX_BODY_BYTES = 32 * 1024 * 1024
JSON = b"application/json"
_REASONS = {
    100: b"Continue", 200: b"OK", 400: b"Bad Request", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large",
    422: b"Unprocessable Entity", 424: b"Failed Dependency", 429: b"Too Many Requests",
    500: b"Internal Server Error", 503: b"Service Unavailable",
}


class Request:
    __slots__ = ("method", "path", "query", "body", "keep_alive", "_raw_headers", "_headers")

    def __init__(self, method: str, path: str, query: str,
                 headers: dict[str, str] | list[tuple[bytes, bytes]], body: bytes,
                 keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.keep_alive = keep_alive
        if isinstance(headers, dict):
            self._headers: dict[str, str] | None = headers
            self._raw_headers: list[tuple[bytes, bytes]] = []
        else:
            self._headers = None
            self._raw_headers = headers

    @property
    def headers(self) -> dict[str, str]:
        """Header names in lower case; decoded on first use (most routes never look)."""
        if self._headers is None:
            self._headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                             for name, value in self._raw_headers}
        return self._headers


Handler = Callable[[Request, "Exchange"], Awaitable[None]]


def _head(status: int, content_type: bytes, extra: bytes) -> bytes:
    reason = _REASONS.get(status, b"Unknown")
    return b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\n%b" % (status, reason, content_type, extra)


class Exchange:
    """One request's response side: a whole body, or a chunked stream."""

    __slots__ = ("_conn", "keep_alive", "started", "finished", "status")

    def __init__(self, conn: HttpConnection, keep_alive: bool) -> None:
        self._conn = conn
        self.keep_alive = keep_alive
        self.started = False
        self.finished = False
        self.status = 0  # the response's status once started (access log)

    @property
    def disconnected(self) -> bool:
        return self._conn.closed

    def send(self, status: int, body: bytes, content_type: bytes = JSON,
             headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.finished = True
        self.status = status
        transport = self._conn.transport
        if self._conn.closed or transport is None or transport.is_closing():
            raise ClientDisconnected()
        extra = b"".join(b"%b: %b\r\n" % pair for pair in headers)
        if not self.keep_alive:
            extra += b"connection: close\r\n"
        transport.write(_head(status, content_type, extra)
                        + b"content-length: %d\r\n\r\n" % len(body) + body)

    def start_stream(self, status: int = 200, content_type: bytes = b"text/event-stream",
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.status = status
        extra = b"".join(b"%b: %b\r\n" % pair for pair in headers)
        if not self.keep_alive:
            extra += b"connection: close\r\n"
        self._write(_head(status, content_type, extra)
                    + b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")

    def write(self, data: bytes) -> None:
        """One HTTP chunk; raises ClientDisconnected once the client is gone."""
        if data:
            self._write(b"%x\r\n%b\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self._write(b"0\r\n\r\n")
        self.finished = True

    @property
    def must_drain(self) -> bool:
        return self._conn.paused

    async def drain(self) -> None:
        await self._conn.drain()

    def abort(self) -> None:
        """Close the connection without finishing the response (a dying engine)."""
        self.finished = True
        self._conn.close()

    def _write(self, data: bytes) -> None:
        transport = self._conn.transport
        if self._conn.closed or transport is None or transport.is_closing():
            raise ClientDisconnected()
        transport.write(data)


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = server.loop
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_too_large = False
        self._pending: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None
        self.last_activity = self._loop.time()

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.connections.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ClientDisconnected())

    def data_received(self, data: bytes) -> None:
        self.last_activity = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, b'{"detail":"protocol upgrades are not supported"}')
        except httptools.HttpParserError as exc:
            # httptools wraps our callbacks' exceptions, hence a flag for the body limit.
            if self._body_too_large:
                self._reject(413, b'{"detail":"request body larger than %d bytes"}'
                             % self._server.max_body_bytes)
            else:
                self._reject(400, b'{"detail":"malformed HTTP request: %b"}'
                             % str(exc).replace('"', "'").encode())

    def eof_received(self) -> bool:
        # A client that half-closes is gone for our purposes: cancel what it asked for.
        return False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        for name, value in self._headers:
            if name.lower() == b"expect" and value.lower() == b"100-continue":
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._server.max_body_bytes:
            self._body_too_large = True
            raise ValueError("request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        path, _, query = self._url.partition(b"?")
        request = Request(
            self._parser.get_method().decode("ascii", "replace"),
            path.decode("latin-1"),
            query.decode("latin-1"),
            self._headers,
            b"".join(self._body),
            self._parser.should_keep_alive(),
        )
        if self.task is None:
            self._start(request)
        else:
            self._pending.append(request)

    # request cycle
    def _start(self, request: Request) -> None:
        self.task = self._loop.create_task(self._run(request))

    async def _run(self, request: Request) -> None:
        exchange = Exchange(self, request.keep_alive)
        try:
            await self._server.handler(request, exchange)
            if not exchange.finished and not self.closed:
                raise RuntimeError(f"{request.method} {request.path}: handler sent no response")
        except (asyncio.CancelledError, ClientDisconnected):
            # The client went away (or we are shutting down); the handler has counted it.
            self.close()
            return
        except Exception:
            log.exception("error while answering %s %s", request.method, request.path)
            if not exchange.started and not self.closed:
                exchange.keep_alive = False
                exchange.send(500, b'{"detail":"internal error in the simulator"}')
            self.close()
            return
        finally:
            self.task = None
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        if not request.keep_alive:
            self.close()
        elif self._pending:
            self._start(self._pending.popleft())
        else:
            self.last_activity = self._loop.time()

    async def drain(self) -> None:
        if self.closed:
            raise ClientDisconnected()
        if not self.paused:
            return
        self._drain_waiter = self._loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _reject(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.task is None:
            self.transport.write(_head(status, JSON, b"connection: close\r\n")
                                 + b"content-length: %d\r\n\r\n" % len(body) + body)
        self.close()



class HttpServer:
    def __init__(self, handler: Handler, *, keepalive_timeout_s: float = 75.0,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.handler = handler
        self.keepalive_timeout_s = keepalive_timeout_s
        self.max_body_bytes = max_body_bytes
        self.connections: set[HttpConnection] = set()
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def listen(self, host: str, port: int) -> int:
        """Start accepting; returns the port (useful with port 0)."""
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self), host, port, backlog=4096, reuse_address=True)
        self._schedule_sweep()
        return int(self._server.sockets[0].getsockname()[1])

    def _schedule_sweep(self) -> None:
        # One timer for all connections, not one per request: idle keep-alive connections (no
        # request in flight, nothing received for keepalive_timeout_s) are closed.
        interval = min(max(self.keepalive_timeout_s / 4, 0.05), 5.0)
        self._sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        deadline = self.loop.time() - self.keepalive_timeout_s
        for conn in list(self.connections):
            if conn.task is None and conn.last_activity < deadline:
                conn.close()
        self._schedule_sweep()

    def in_flight(self) -> list[asyncio.Task[None]]:
        return [c.task for c in self.connections if c.task is not None and not c.task.done()]

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting, give requests in flight `grace_s` to finish, then close everything."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        tasks = self.in_flight()
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks run
        tasks = self.in_flight()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
