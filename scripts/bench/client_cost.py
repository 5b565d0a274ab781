"""CPU per request of the router's upstream client (aiohttp) vs a minimal protocol-level client.

    python scripts/bench/client_cost.py [--requests 20000]

Measures what closing the router's CPU gap would take (docs/benchmarks.md): the client side of
a proxied request, 32 concurrent keep-alive requests to one simulator (started here on CPU 1,
stopped here by PID), this process pinned to CPU 0, CPU from getrusage. The "minimal" client is a
measurement of the floor (an asyncio Protocol feeding httptools' response parser, a deque of idle
connections), not a production client: no timeouts, no stale-connection retry, no streaming.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import resource
import sys
import time
from pathlib import Path

import aiohttp
import httptools
import uvloop
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Procs, free_port, wait_http  # noqa: E402

BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'
CONCURRENCY = 32


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(one, requests: int) -> tuple[float, float]:
    await asyncio.gather(*[one() for _ in range(2 * CONCURRENCY)])  # warm the pools

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    before, started = cpu(), time.perf_counter()
    await asyncio.gather(*[worker(requests // CONCURRENCY) for _ in range(CONCURRENCY)])
    return (cpu() - before) / requests * 1e6, requests / (time.perf_counter() - started)


async def with_aiohttp(base: str, requests: int) -> tuple[float, float]:
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=512), auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",
                                                                     "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2)) as session:
        url = URL(base + "/v1/chat/completions", encoded=True)

        async def one() -> None:
            response = await session.post(url, data=BODY, allow_redirects=False, headers={
                "Content-Type": "application/json", "x-request-id": "bench"})
            await response.read()
            response.release()

        return await measure(one, requests)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[bytes] | None = None
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.chunks = b"".join(self.chunks), []
        if waiter is not None and not waiter.done():
            waiter.set_result(body)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


async def with_minimal_client(base: str, requests: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    host, port = base.removeprefix("http://").split(":")
    idle: collections.deque[_Connection] = collections.deque()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nx-request-id: bench\r\n").encode()

    async def one() -> None:
        connection = idle.pop() if idle else (await loop.create_connection(
            _Connection, host, int(port)))[1]
        connection.waiter = loop.create_future()
        assert connection.transport is not None
        connection.transport.write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(BODY), BODY))
        await connection.waiter
        idle.append(connection)

    return await measure(one, requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[2]
    procs = Procs(Path("/tmp"))
    try:
        port = free_port()
        sim = procs.start("client-cost-sim", [sys.executable, "-m", "simulator", "--port",
                                              str(port), "--model", "bench-model",
                                              "--ttft-ms", "0", "--itl-ms", "0",
                                              "--output-tokens", "16", "--log-level", "warning"],
                          cpus="1", cwd=str(repo), env={"PYTHONPATH": str(repo)})
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health", sim)
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {0})
        for _ in range(2):
            for name, run in (("aiohttp ClientSession", with_aiohttp),
                              ("minimal protocol client", with_minimal_client)):
                cost, rate = uvloop.run(run(base, args.requests))
                print(f"{name:24s} {cost:6.1f} µs CPU / request ({rate:,.0f} req/s)", flush=True)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
