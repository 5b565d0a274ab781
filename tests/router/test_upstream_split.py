"""The default upstream client sends plain-HTTP workers through the lean client and https
upstreams through aiohttp."""

from __future__ import annotations

import pytest

from router.errors import UpstreamConnectError
from router.upstream import SchemeSplitClient, make_client
from tests.support.ports import free_port


async def test_https_upstreams_go_through_aiohttp_and_workers_through_the_lean_client() -> None:
    client = make_client("httptools", connect_timeout_s=2.0, max_connections_per_host=4)
    assert isinstance(client, SchemeSplitClient)
    await client.start()
    try:
        closed = free_port()
        with pytest.raises(UpstreamConnectError):
            await client.open(f"https://127.0.0.1:{closed}/v1/chat/completions", b"{}", {})
        assert client._plain._pools == {}  # the lean client never saw the https target
        with pytest.raises(UpstreamConnectError):
            await client.open(f"http://127.0.0.1:{closed}/v1/chat/completions", b"{}", {})
        assert list(client._plain._pools) == [("127.0.0.1", closed, False)]
    finally:
        await client.aclose()
