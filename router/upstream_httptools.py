"""A lean HTTP/1.1 upstream client: asyncio Protocol + httptools' response parser.

Same interface as `router/upstream.py` (`open(url, body, headers)` -> a response with `status`,
`content_type`, `relay_headers()`, `read_all()`, `read_chunk()`, `close()`, `release()`), chosen
with `--upstream-client httptools`. Why it exists: aiohttp's `ClientSession` costs 120-160 µs of
CPU per proxied request on this machine, this style 25-30 µs (scripts/bench/client_cost.py), the
largest single item of the router's per-request cost (docs/benchmarks.md).

What it does, and only that: POST with a body (requests are written whole), keep-alive pools per
host (a deque of idle connections, at most `max_connections_per_host` open, further requests wait
their turn), responses with content-length, chunked or read-until-close bodies (httptools decodes
them), TLS (though by default https upstreams go through aiohttp: `SchemeSplitClient` in
upstream.py), read flow control (a slow client pauses the worker's socket). No
redirects, cookies, proxies or decompression, as with the aiohttp session. Timeouts other than
connect are the request guard's (guard.py): it cancels the task, and a cancelled response closes
its connection, so the engine sees the request cancelled.

A reused keep-alive connection that the worker closed meanwhile fails before any response byte;
such a request is sent once more on a fresh connection instead of counting against the worker.
Likewise a connect whose timer fired late because the router's own loop stalled is tried once
more (`_Pool._connect`): the stall is the router's, not the worker's.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import httptools

from router.errors import UpstreamBroken, UpstreamConnectError, UpstreamTimeout

_RELAYED_PREFIXES = (b"x-ratelimit-", b"retry-after", b"openai-")
log = logging.getLogger("router.upstream")

# A connect timer firing this much after its deadline is the loop's stall, not the worker's.
_LATE_TIMER_S = 0.25
_PAUSE_ABOVE = 1 << 20  # pause reading from the worker while this much body is unread


class _Stale(Exception):
    """A reused connection was closed by the peer before answering."""


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_type = b"application/json"
        self.headers_done = False
        self.message_done = False
        self.received_any = False
        self.delimited = False  # content-length or chunked (else: the body ends at close)
        self.keep_alive = True
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    # protocol ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = UpstreamBroken(f"malformed response: {exc}")
            self._wake()
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.message_done and not self.delimited:
            self.message_done = True  # a body delimited by the connection's end
        elif not self.message_done and self.error is None:
            reason = f"connection closed by the upstream ({exc or 'EOF'})"
            self.error = _Stale(reason) if not self.received_any else UpstreamBroken(reason)
        self._wake()
        self.pool.forget(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-type":
            self.content_type = value
        elif lower in (b"content-length", b"transfer-encoding"):
            self.delimited = True
        elif lower.startswith(_RELAYED_PREFIXES):
            self.headers.append((lower, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _PAUSE_ABOVE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.message_done = True
        self._wake()

    # the exchange -------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def send(self, head: bytes, body: bytes) -> None:
        self._reset_exchange()
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    def take(self) -> bytes:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.pool.forget(self)


class _Pool:
    """Keep-alive connections to one host:port."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, *, limit: int,
                 connect_timeout_s: float, keepalive_s: float) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.limit = limit
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.idle: collections.deque[_Connection] = collections.deque()
        self.open = 0
        self.members: set[_Connection] = set()
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> tuple[_Connection, bool]:
        """A connection for one exchange, and whether it was reused."""
        now = time.monotonic()
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive_s:
                return connection, True
            connection.close()
        while self.open >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken for a free slot and cancelled before taking it (client gone, deadline):
                # pass the wake-up on, or the next waiter sits beside a free slot.
                if waiter.done() and not waiter.cancelled():
                    self._notify()
                raise
            if self.idle:
                return await self.acquire()
        return await self.connect(), False

    async def connect(self) -> _Connection:
        self.open += 1
        try:
            connection = await self._connect()
        except TimeoutError as exc:
            self._freed()
            raise UpstreamTimeout(f"connect timeout to {self.host}:{self.port}") from exc
        except OSError as exc:
            self._freed()
            raise UpstreamConnectError(f"cannot reach {self.host}:{self.port}: {exc}") from exc
        except BaseException:
            self._freed()
            raise
        self.members.add(connection)
        return connection

    async def _connect(self) -> _Connection:
        """One connection within the connect timeout - twice if the timer fired late.

        A timer that fires well after its deadline means this process's own loop stalled (CPU
        starvation, a long GC): the kernel may have completed the connection meanwhile, and
        the timer and the completion land in the same loop turn, so the connect looks timed out
        though the worker accepted at once. That says nothing about the worker (and must not
        count against its circuit: a stalled router would otherwise open every circuit of a
        pool at once), so connect once more on a loop that runs again."""
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            deadline = loop.time() + self.connect_timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self), self.host, self.port, ssl=self.tls,
                        server_hostname=self.host if self.tls else None)
                return connection
            except TimeoutError:
                late = loop.time() - deadline
                if attempt or late < _LATE_TIMER_S:
                    raise
                log.warning("connect timer to %s:%d fired %.2f s late (event loop stalled); "
                            "connecting again", self.host, self.port, late)
        raise AssertionError("unreachable")

    def release(self, connection: _Connection) -> None:
        if connection.closed or not connection.keep_alive:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self.idle.append(connection)
        self._notify()

    def forget(self, connection: _Connection) -> None:
        if connection in self.members:
            self.members.discard(connection)
            self._freed()

    def _freed(self) -> None:
        self.open -= 1
        self._notify()

    def _notify(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close_all(self) -> None:
        for connection in list(self.members):
            connection.close()


class HttptoolsResponse:
    __slots__ = ("_connection", "_pool", "status", "content_type", "_headers", "_finished")

    def __init__(self, connection: _Connection, pool: _Pool) -> None:
        self._connection = connection
        self._pool = pool
        self.status = connection.status
        # Kept here: once the body is read the connection may serve another request.
        self._headers = connection.headers
        self.content_type = connection.content_type.decode("latin-1")
        self._finished = False

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def relay_headers(self) -> list[tuple[bytes, bytes]]:
        return self._headers

    async def read_chunk(self) -> bytes:
        connection = self._connection
        while True:
            if connection.chunks:
                return connection.take()
            if connection.message_done:
                self.release()
                return b""
            if connection.error is not None or connection.closed:
                self.close()
                raise UpstreamBroken(str(connection.error or "connection closed mid-body"))
            await connection.wait()

    async def read_all(self) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = await self.read_chunk()
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def close(self) -> None:
        if not self._finished:
            self._finished = True
            self._connection.close()

    def release(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._connection.message_done and not self._connection.chunks:
            self._pool.release(self._connection)
        else:
            self._connection.close()


class HttptoolsUpstreamClient:
    def __init__(self, *, connect_timeout_s: float, max_connections_per_host: int,
                 keepalive_s: float = 60.0) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._limit = max_connections_per_host
        self._keepalive_s = keepalive_s
        self._pools: dict[tuple[str, int, bool], _Pool] = {}
        # url -> (pool key, request head up to the content-length line)
        self._targets: dict[str, tuple[tuple[str, int, bool], bytes]] = {}
        self._tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close_all()
        self._pools.clear()

    def _target(self, url: str) -> tuple[_Pool, bytes]:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            tls = parts.scheme == "https"
            host = parts.hostname or ""
            port = parts.port or (443 if tls else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("latin-1")
            if len(self._targets) > 10_000:
                self._targets.clear()
            target = self._targets[url] = ((host, port, tls), head)
        key, head = target
        pool = self._pools.get(key)
        if pool is None:
            if key[2] and self._tls is None:
                self._tls = ssl.create_default_context()
            pool = self._pools[key] = _Pool(key[0], key[1], self._tls if key[2] else None,
                                            limit=self._limit,
                                            connect_timeout_s=self._connect_timeout_s,
                                            keepalive_s=self._keepalive_s)
        return pool, head

    async def open(self, url: str, body: bytes,
                   headers: Mapping[str, str]) -> HttptoolsResponse:
        """POST and wait for the status line and headers."""
        pool, head = self._target(url)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        request_head = b"%s%sContent-Length: %d\r\n\r\n" % (head, extra, len(body))
        for _ in range(2):
            connection, reused = await pool.acquire()
            try:
                connection.send(request_head, body)
                while not connection.headers_done:
                    if connection.error is not None:
                        raise connection.error
                    if connection.closed:
                        raise _Stale("connection closed before the response")
                    await connection.wait()
                return HttptoolsResponse(connection, pool)
            except _Stale as exc:
                connection.close()
                if reused:
                    continue  # the worker closed an idle connection: once more, fresh
                raise UpstreamConnectError(f"upstream closed the connection: {exc}") from exc
            except UpstreamBroken:
                connection.close()
                raise
            except BaseException:
                connection.close()  # cancelled (timeout, client gone): the engine sees it
                raise
        raise UpstreamConnectError("upstream closed two connections in a row")
