"""The lean HTTP/1.1 server, in-process on a real socket: framing, keep-alive, disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from simulator.errors import ClientDisconnected
from simulator.httpserver import Exchange, HttpServer, Request
from tests.simulator.rawhttp import close, read_head, read_response, request_bytes

Handler = Callable[[Request, Exchange], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    servers: list[HttpServer] = []

    async def start(handler: Handler, **options: object) -> int:
        server = HttpServer(handler, **options)  # type: ignore[arg-type]
        servers.append(server)
        return await server.listen("127.0.0.1", 0)

    yield start
    for server in servers:
        await server.shutdown(0)


async def echo(request: Request, exchange: Exchange) -> None:
    exchange.send(200, b"%b %b %b" % (request.method.encode(), request.path.encode(),
                                      request.body))


async def test_keep_alive_serves_several_requests_on_one_connection(serve) -> None:
    port = await serve(echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for body in (b"one", b"two"):
        writer.write(request_bytes("POST", "/x", body))
        response = await read_response(reader)
        assert (response.status, response.body) == (200, b"POST /x " + body)
    await close(writer)


async def test_pipelined_requests_are_answered_in_order(serve) -> None:
    port = await serve(echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("POST", "/a", b"1") + request_bytes("POST", "/b", b"2"))
    assert (await read_response(reader)).body == b"POST /a 1"
    assert (await read_response(reader)).body == b"POST /b 2"
    await close(writer)


async def test_expect_continue_and_chunked_request_bodies(serve) -> None:
    port = await serve(echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /c HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")
    assert (await read_head(reader))[0] == 100
    writer.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert (await read_response(reader)).body == b"POST /c abcde"
    await close(writer)


async def test_connection_close_is_honoured(serve) -> None:
    port = await serve(echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", "/", headers={"connection": "close"}))
    response = await read_response(reader)
    assert response.headers["connection"] == "close"
    assert await reader.read() == b""
    await close(writer)


async def test_garbage_gets_a_400_and_a_closed_connection(serve) -> None:
    port = await serve(echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    assert (await read_response(reader)).status == 400
    assert await reader.read() == b""
    await close(writer)


async def test_a_body_over_the_limit_gets_a_413(serve) -> None:
    port = await serve(echo, max_body_bytes=10)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("POST", "/", b"x" * 11))
    assert (await read_response(reader)).status == 413
    await close(writer)


async def test_each_write_of_a_stream_is_one_http_chunk(serve) -> None:
    async def stream(request: Request, exchange: Exchange) -> None:
        exchange.start_stream()
        for index in range(5):
            exchange.write(b"data: %d\n\n" % index)
        exchange.end_stream()

    port = await serve(stream)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", "/"))
    response = await read_response(reader)
    assert response.complete
    assert response.chunks == [b"data: %d\n\n" % i for i in range(5)]
    await close(writer)


async def test_a_client_that_goes_away_cancels_its_request_at_once(serve) -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def forever(request: Request, exchange: Exchange) -> None:
        await seen.put("started")
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            await seen.put("cancelled")
            raise

    port = await serve(forever)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", "/"))
    assert await asyncio.wait_for(seen.get(), 10) == "started"
    await close(writer)
    assert await asyncio.wait_for(seen.get(), 10) == "cancelled"


async def test_abort_cuts_a_stream_without_its_last_chunk(serve) -> None:
    async def dying(request: Request, exchange: Exchange) -> None:
        exchange.start_stream()
        exchange.write(b"data: 1\n\n")
        exchange.abort()

    port = await serve(dying)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", "/"))
    response = await read_response(reader)
    assert response.chunks == [b"data: 1\n\n"] and not response.complete
    await close(writer)


async def test_writing_to_a_gone_client_raises_client_disconnected(serve) -> None:
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def slow_stream(request: Request, exchange: Exchange) -> None:
        exchange.start_stream()
        try:
            while True:
                exchange.write(b"data: x\n\n")
                await asyncio.sleep(0)
        except ClientDisconnected:
            outcome.set_result("disconnected")
            raise
        except asyncio.CancelledError:
            outcome.set_result("cancelled")
            raise

    port = await serve(slow_stream)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", "/"))
    await read_head(reader)
    await close(writer)
    assert await asyncio.wait_for(outcome, 10) in {"disconnected", "cancelled"}


async def test_a_handler_error_becomes_a_500(serve) -> None:
    async def broken(request: Request, exchange: Exchange) -> None:
        raise ValueError("boom")

    port = await serve(broken)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", "/"))
    assert (await read_response(reader)).status == 500
    await close(writer)


async def test_idle_keep_alive_connections_are_closed_after_the_timeout(serve) -> None:
    port = await serve(echo, keepalive_timeout_s=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", "/"))
    assert (await read_response(reader)).status == 200
    assert await asyncio.wait_for(reader.read(), 10) == b""
    await close(writer)


async def test_request_headers_are_decoded_in_lower_case(serve) -> None:
    async def header(request: Request, exchange: Exchange) -> None:
        exchange.send(200, request.headers["x-probe"].encode())

    port = await serve(header)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", "/", headers={"X-Probe": "Yes"}))
    assert (await read_response(reader)).body == b"Yes"
    await close(writer)
