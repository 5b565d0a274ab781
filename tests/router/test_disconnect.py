"""A client that goes away cancels its upstream request: the engine stops generating for it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.router.conftest import Fleet


@pytest.fixture(params=["httptools", "aiohttp"])
def upstream_client(request: pytest.FixtureRequest) -> str:
    """Every test here runs with both upstream clients (same interface, same behaviour)."""
    return request.param


MESSAGES = [{"role": "user", "content": "hello"}]


async def test_closing_a_stream_cancels_the_upstream_request(start_sim, fleet: Fleet,
                                                             start_router) -> None:
    sim = await start_sim("m1", "--ttft-ms", "0", "--itl-ms", "100", "--output-tokens", "100")
    await fleet.add_worker(sim, worker_id="w1")
    router = await start_router(no_auth=True)
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("POST", router.url + "/v1/chat/completions",
                                 json={"model": "m1", "messages": MESSAGES,
                                       "stream": True}) as response:
            async for _ in response.aiter_bytes():
                break  # one chunk, then the client leaves
    stats = await sim.wait_stats(cancelled=1, running=0)
    assert stats["completed"] == 0
    for _ in range(100):
        if router.runtime.inflight.local("w1") == 0:
            break
        await asyncio.sleep(0.02)
    assert router.runtime.inflight.local("w1") == 0


async def test_client_timeout_on_a_non_streamed_request_cancels_it_upstream(
        start_sim, fleet: Fleet, start_router) -> None:
    sim = await start_sim("m1", "--ttft-ms", "5000", "--itl-ms", "0")
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)
    async with httpx.AsyncClient(timeout=0.5) as client:
        try:
            await client.post(router.url + "/v1/chat/completions",
                              json={"model": "m1", "messages": MESSAGES})
        except httpx.TimeoutException:
            pass
    stats = await sim.wait_stats(cancelled=1)
    assert stats["completed"] == 0
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = (await client.get(router.url + "/metrics")).text
    assert "flotilla_router_client_disconnects_total 1.0" in metrics
