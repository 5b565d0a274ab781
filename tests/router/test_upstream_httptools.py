"""The httptools upstream client's edge cases, against small real servers on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from router.errors import UpstreamConnectError, UpstreamTimeout
from router.upstream_httptools import HttptoolsUpstreamClient
from tests.support.ports import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[str, list[int]]]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[str, list[int]]:
        accepted: list[int] = []

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/x", accepted

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length)


def _client(limit: int = 8) -> HttptoolsUpstreamClient:
    return HttptoolsUpstreamClient(connect_timeout_s=2, max_connections_per_host=limit)


async def test_body_delimited_by_the_connection_end_is_read_whole(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                     b"all of it")
        await writer.drain()

    url, _ = await serve(handler)
    client = _client()
    response = await client.open(url, b"{}", {"Content-Type": "application/json"})
    assert response.status == 200 and response.content_type == "text/plain"
    assert await response.read_all() == b"all of it"
    await client.aclose()


async def test_idle_connection_closed_by_the_server_is_replaced_transparently(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # then close the keep-alive connection without a word, as an idle timeout does

    url, accepted = await serve(handler)
    client = _client()
    for _ in range(3):
        response = await client.open(url, b"{}", {})
        assert await response.read_all() == b"ok"
        response.release()
        await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
    assert len(accepted) == 3
    await client.aclose()


async def test_chunked_response_arrives_chunk_by_chunk_and_the_connection_is_reused(
        serve) -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\nx-ratelimit-remaining: 9\r\n\r\n"
                         b"d\r\ndata: first\n\n\r\n")
            await writer.drain()
            await gate.wait()
            writer.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
            await writer.drain()
            gate.clear()

    url, accepted = await serve(handler)
    client = _client()
    for _ in range(2):
        response = await client.open(url, b"{}", {})
        assert response.is_event_stream
        assert response.relay_headers() == [(b"x-ratelimit-remaining", b"9")]
        assert await response.read_chunk() == b"data: first\n\n"
        gate.set()
        assert await response.read_chunk() == b"data: second\n\n"
        assert await response.read_chunk() == b""
    assert len(accepted) == 1
    await client.aclose()


async def test_pool_limit_makes_requests_wait_their_turn(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    url, accepted = await serve(handler)
    client = _client(limit=1)

    async def one() -> bytes:
        response = await client.open(url, b"{}", {})
        return await response.read_all()

    assert await asyncio.gather(one(), one(), one()) == [b"ok"] * 3
    assert len(accepted) == 1
    await client.aclose()


async def test_refused_connection_is_a_connect_error() -> None:
    client = _client()
    with pytest.raises(UpstreamConnectError):
        await client.open(f"http://127.0.0.1:{free_port()}/v1/x", b"{}", {})
    await client.aclose()


async def test_a_waiter_cancelled_as_it_is_woken_passes_the_free_connection_on(serve) -> None:
    """A request woken for a freed connection slot and cancelled before it ran (its client left,
    its deadline passed) must hand the slot to the next waiter, not strand it until some other
    connection frees up."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # never answers; returns when the client closes

    url, accepted = await serve(hold)
    client = HttptoolsUpstreamClient(connect_timeout_s=2, max_connections_per_host=1)
    try:
        first = asyncio.create_task(client.open(url, b"{}", {}))
        while not accepted:
            await asyncio.sleep(0.01)
        woken = asyncio.create_task(client.open(url, b"{}", {}))
        waiting = asyncio.create_task(client.open(url, b"{}", {}))
        await asyncio.sleep(0.05)  # both wait for the only slot
        first.cancel()  # frees the slot and wakes `woken` ...
        await asyncio.sleep(0)
        woken.cancel()  # ... which is cancelled before it could take it
        for _ in range(200):
            if len(accepted) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(accepted) == 2, "the freed slot was lost with the cancelled waiter"
        assert not waiting.done()  # connected, waiting for an answer that never comes
        waiting.cancel()
        await asyncio.gather(first, woken, waiting, return_exceptions=True)
    finally:
        await client.aclose()


async def test_a_connect_timeout_caused_by_the_routers_own_stalled_loop_is_retried(serve) -> None:
    """When the router's event loop stalls (CPU starvation, a long GC) past the connect timeout,
    the timer and the completed connection land in the same loop turn and the connect looks
    timed out though the worker accepted at once. A timer that fired that late is the router's
    stall, not the worker's silence: connect once more instead of failing (and counting against
    the worker's circuit)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    url, accepted = await serve(answer)
    client = HttptoolsUpstreamClient(connect_timeout_s=0.3, max_connections_per_host=8)
    try:
        opening = asyncio.create_task(client.open(url, b"{}", {}))
        await asyncio.sleep(0)  # the connect has started
        time.sleep(0.8)  # the loop stalls past the connect timeout  # noqa: ASYNC251
        response = await asyncio.wait_for(opening, 5)
        assert response.status == 200 and await response.read_all() == b"ok"
    finally:
        await client.aclose()


async def test_a_worker_that_does_not_accept_still_times_out(serve) -> None:
    """The retry above is for late timers only: a connect that really hangs fails in time."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # a full accept queue: further SYNs are dropped, connects hang
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the backlog so the next connect cannot complete
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        client = HttptoolsUpstreamClient(connect_timeout_s=0.3, max_connections_per_host=8)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await client.open(f"http://127.0.0.1:{port}/v1/x", b"{}", {})
        assert time.monotonic() - started < 5  # bounded (a generous bound: no timing claim)
        await client.aclose()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
