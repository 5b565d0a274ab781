"""A raw HTTP/1.1 client for tests that must see chunk boundaries or drop a connection."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)  # payloads of a chunked body, in order
    complete: bool = True                                # False: the connection closed mid-body

    def json(self) -> object:
        return orjson.loads(self.body)


def request_bytes(method: str, path: str, body: object = None, *,
                  headers: dict[str, str] | None = None) -> bytes:
    payload = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines += ["content-type: application/json", f"content-length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    status, headers = await read_head(reader)
    if status == 100:
        return RawResponse(status, headers)
    if headers.get("transfer-encoding") == "chunked":
        response = RawResponse(status, headers, complete=False)
        try:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    response.complete = True
                    break
                response.chunks.append(data[:-2])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        response.body = b"".join(response.chunks)
        return response
    length = int(headers.get("content-length", "0"))
    return RawResponse(status, headers, await reader.readexactly(length))


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a client connection and wait until its socket is really closed."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def fetch(port: int, method: str, path: str, body: object = None) -> RawResponse:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(method, path, body))
        return await read_response(reader)
    finally:
        await close(writer)
