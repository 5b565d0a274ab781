"""The upstream HTTP client: aiohttp, behind a small interface so it can be swapped.

`--upstream-client aiohttp` selects this one; the default is the leaner httptools client
(upstream_httptools.py), same interface, measured 4-5x cheaper per request.

Why aiohttp and not httpx here: measured on this machine (docs/benchmarks.md, FACTS), httpx's own
transport costs ~10x more CPU per proxied request and per streamed event. httpx stays the client
of the agent, the control plane and the tests, where volume is low.

One `ClientSession` per router: a keep-alive pool per worker host (`limit_per_host`), no cookies,
no automatic decompression (bytes are relayed as they come), no redirects. Timeouts: connect is
aiohttp's own (`sock_connect`); first byte and idle-between-chunks are the request guard's
(guard.py), which cancels the request task; closing a response mid-body drops its connection, so
the engine sees the request cancelled.

    client.open(url, body, headers) -> UpstreamResponse   (raises UpstreamConnectError)
    response.status / content_type / relay_headers
    await response.read_all()   await response.read_chunk() (b"" at the end)   response.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
from yarl import URL

from router.errors import UpstreamBroken, UpstreamConnectError, UpstreamTimeout

# Response headers worth passing to the client besides content-type (OpenAI and engines send
# these on 429/503, and OpenAI's rate-limit headers are useful to SDK users).
_RELAYED_PREFIXES = ("x-ratelimit-", "retry-after", "openai-")

_CONNECT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                   aiohttp.ClientResponseError, OSError)


class UpstreamReply(Protocol):
    """What the relay needs of a response, whichever client produced it."""

    status: int
    content_type: str

    @property
    def is_event_stream(self) -> bool: ...
    def relay_headers(self) -> list[tuple[bytes, bytes]]: ...
    async def read_all(self) -> bytes: ...
    async def read_chunk(self) -> bytes: ...
    def close(self) -> None: ...
    def release(self) -> None: ...


class UpstreamResponse:
    __slots__ = ("_response", "status", "content_type")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "application/json")

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def relay_headers(self) -> list[tuple[bytes, bytes]]:
        out = []
        for name, value in self._response.headers.items():
            lower = name.lower()
            if lower.startswith(_RELAYED_PREFIXES):
                out.append((lower.encode("latin-1"), value.encode("latin-1")))
        return out

    async def read_all(self) -> bytes:
        try:
            return await self._response.read()
        except _CONNECT_ERRORS as exc:
            self._response.close()
            raise UpstreamBroken(f"response body broke off: {exc!r}") from exc

    async def read_chunk(self) -> bytes:
        """The next bytes of the body as they arrive; b"" at a clean end."""
        try:
            return await self._response.content.readany()
        except _CONNECT_ERRORS as exc:
            self._response.close()
            raise UpstreamBroken(f"stream broke off: {exc!r}") from exc

    def close(self) -> None:
        """Drop the connection (the engine sees the client gone)."""
        self._response.close()

    def release(self) -> None:
        """The body was read to its end: the connection goes back to the pool."""
        self._response.release()


class UpstreamClient:
    def __init__(self, *, connect_timeout_s: float, max_connections_per_host: int,
                 keepalive_s: float = 60.0) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._max_per_host = max_connections_per_host
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._max_per_host,
                                         keepalive_timeout=self._keepalive_s,
                                         ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, url: str) -> URL:
        # Parsing a URL costs more than the rest of building a request; workers' URLs repeat.
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 10_000:
                self._urls.clear()
            parsed = self._urls[url] = URL(url, encoded=True)
        return parsed

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamReply:
        """POST and wait for the status line and headers."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        try:
            response = await self._session.post(self._url(url), data=body, headers=headers,
                                                allow_redirects=False)
        except TimeoutError as exc:  # aiohttp's connect timeout subclasses it
            raise UpstreamTimeout(f"connect timeout: {exc!r}") from exc
        except _CONNECT_ERRORS as exc:
            raise UpstreamConnectError(f"cannot reach upstream: {exc!r}") from exc
        return UpstreamResponse(response)


class SchemeSplitClient:
    """Plain-HTTP workers through the lean client; https upstreams (paid APIs) through aiohttp.

    Worker traffic is where the volume and the CPU budget are, over plain HTTP on a private
    network; the lean client was measured for exactly that. External upstreams speak TLS, where
    aiohttp's mature TLS handling (certificates, SNI, proxies' quirks) is worth its CPU at the
    low volume a fallback target sees.
    """

    def __init__(self, plain: Any, tls: UpstreamClient) -> None:
        self._plain = plain
        self._tls = tls

    async def start(self) -> None:
        await self._plain.start()
        await self._tls.start()

    async def aclose(self) -> None:
        try:
            await self._plain.aclose()
        finally:
            await self._tls.aclose()

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamReply:
        client = self._tls if url.startswith("https:") else self._plain
        reply: UpstreamReply = await client.open(url, body, headers)
        return reply


def make_client(name: str, **options: Any) -> Any:
    """The upstream client named by `--upstream-client`: `httptools` (the default: the lean
    client for http:// workers, aiohttp for https:// upstreams) or `aiohttp` for everything."""
    if name == "httptools":
        from router.upstream_httptools import HttptoolsUpstreamClient

        return SchemeSplitClient(HttptoolsUpstreamClient(**options), UpstreamClient(**options))
    return UpstreamClient(**options)

