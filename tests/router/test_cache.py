"""The response cache: real simulator, real Redis, real router, the official SDK as the client."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest

from fleet.store import ROUTES
from tests.router.conftest import INSTANT, Fleet
from tests.router.test_stream_resume import metric

MESSAGES = [{"role": "user", "content": "what is a flotilla"}]


async def cached_route(fleet: Fleet, sim: Any, **cache: Any) -> None:
    await fleet.put_pool("p1", "m1")
    await fleet.add_worker(sim, pool="p1")
    await fleet.store.put_doc(ROUTES, "m1", {"targets": [{"pool": "p1"}], "cache": cache})
    await fleet.store.publish("routes")


async def wait_route(router: Any) -> None:
    for _ in range(200):
        if "m1" in router.runtime.keeper.snapshot().routes:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("route never reached the router")


async def chat(client: openai.AsyncOpenAI, **extra: Any) -> tuple[str | None, str]:
    raw = await client.chat.completions.with_raw_response.create(
        model="m1", messages=MESSAGES, **{"temperature": 0, **extra})
    return raw.headers.get("x-flotilla-cache"), raw.parse().choices[0].message.content


async def test_a_deterministic_answer_is_served_from_the_cache_the_second_time(
        start_sim, fleet: Fleet, start_router) -> None:
    sim = await start_sim("m1", *INSTANT)
    await cached_route(fleet, sim)
    router = await start_router(no_auth=True)
    await wait_route(router)
    client = router.client()
    first = await chat(client)
    second = await chat(client)
    assert first[0] == "miss" and second == ("hit", first[1])
    assert (await sim.stats())["received"] == 1
    # Another body is another entry; a seed makes a sampled request deterministic too.
    assert (await chat(client, max_tokens=5))[0] == "miss"
    assert (await chat(client, temperature=0.7, seed=3))[0] == "miss"
    assert (await chat(client, temperature=0.7, seed=3))[0] == "hit"
    assert await metric(router.url, 'flotilla_router_cache_requests_total{model="m1",'
                                    'result="hit"}') == 2


async def test_a_cached_stream_is_replayed_as_a_stream(start_sim, fleet: Fleet,
                                                       start_router) -> None:
    sim = await start_sim("m1", *INSTANT)
    await cached_route(fleet, sim)
    router = await start_router(no_auth=True)
    await wait_route(router)
    client = router.client()
    seen = []
    for _ in range(2):
        raw = await client.chat.completions.with_raw_response.create(
            model="m1", messages=MESSAGES, temperature=0, stream=True,
            stream_options={"include_usage": True})
        text, finish, usage = "", None, None
        async for chunk in raw.parse():
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        assert raw.headers["content-type"].startswith("text/event-stream")
        seen.append((raw.headers["x-flotilla-cache"], text, finish, usage.completion_tokens))
    assert seen[0][0] == "miss" and seen[1][0] == "hit"
    assert seen[0][1:] == seen[1][1:] and seen[0][2] == "stop"
    assert (await sim.stats())["received"] == 1


async def test_sampled_or_tool_requests_bypass_the_cache(start_sim, fleet: Fleet,
                                                         start_router) -> None:
    sim = await start_sim("m1", *INSTANT)
    await cached_route(fleet, sim)
    router = await start_router(no_auth=True)
    await wait_route(router)
    client = router.client()
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for extra in ({"temperature": 0.8}, {"temperature": 0.8}, {"tools": [tool]},
                  {"tools": [tool]}):
        header, _ = await chat(client, **extra)
        assert header is None
    assert (await sim.stats())["received"] == 4
    assert await metric(router.url, 'flotilla_router_cache_requests_total{model="m1",'
                                    'result="bypass"}') == 4


async def test_entries_are_per_api_key_unless_the_route_shares_them(
        start_sim, fleet: Fleet, start_router) -> None:
    sim = await start_sim("m1", *INSTANT)
    await cached_route(fleet, sim)
    router = await start_router()
    await wait_route(router)
    alice, bob = await fleet.create_key("alice"), await fleet.create_key("bob")
    assert (await chat(router.client(alice)))[0] == "miss"
    assert (await chat(router.client(bob)))[0] == "miss"
    assert (await chat(router.client(bob)))[0] == "hit"
    await fleet.store.put_doc(ROUTES, "m1", {"targets": [{"pool": "p1"}],
                                             "cache": {"shared": True}})
    await fleet.store.publish("routes")
    for _ in range(200):
        if router.runtime.keeper.snapshot().routes["m1"].cache.shared:
            break
        await asyncio.sleep(0.02)
    assert (await chat(router.client(alice)))[0] == "miss"
    assert (await chat(router.client(bob)))[0] == "hit"


async def test_errors_and_broken_streams_are_never_cached(start_sim, fleet: Fleet,
                                                          start_router) -> None:
    sim = await start_sim("m1", *INSTANT, "--max-model-len", "64")
    await fleet.put_pool("p1", "m1")
    await fleet.add_worker(sim, pool="p1")
    await fleet.store.put_doc(ROUTES, "m1", {"targets": [{"pool": "p1"}], "cache": {},
                                             "stream_resume": False})
    await fleet.store.publish("routes")
    router = await start_router(no_auth=True)
    await wait_route(router)
    client = router.client()
    for _ in range(2):  # a 400 from the engine (context length) is relayed, not kept
        with pytest.raises(openai.BadRequestError):
            await chat(client, max_tokens=500)
    await sim.put_faults(abort_stream_after_tokens=3)
    for _ in range(2):  # a stream cut short is relayed with its error event, not kept
        with pytest.raises(openai.APIError):
            stream = await client.chat.completions.create(model="m1", messages=MESSAGES,
                                                          temperature=0, stream=True)
            async for _chunk in stream:
                pass
    assert (await sim.stats())["received"] == 4


async def test_the_cache_is_bounded_and_evicts_the_least_recently_used(
        start_sim, fleet: Fleet, start_router) -> None:
    sim = await start_sim("m1", *INSTANT)
    await cached_route(fleet, sim, max_entries=2, ttl_s=60)
    router = await start_router(no_auth=True)
    await wait_route(router)
    client = router.client()
    # 1 is used again before 3 arrives, so 2 is the one evicted; then 2 evicts 3.
    assert [(await chat(client, max_tokens=n))[0] for n in (1, 2, 1, 3, 1, 2)] == \
        ["miss", "miss", "hit", "miss", "hit", "miss"]
    assert await metric(router.url, 'flotilla_router_cache_evictions_total{model="m1"}') == 2


async def test_routes_without_cache_never_touch_it(start_sim, fleet: Fleet,
                                                   start_router) -> None:
    sim = await start_sim("m1", *INSTANT)
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)
    await router.wait_workers(1)
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(router.url + "/v1/chat/completions", json={
            "model": "m1", "messages": MESSAGES, "temperature": 0})
    assert response.status_code == 200 and "x-flotilla-cache" not in response.headers


async def test_answers_larger_than_max_entry_bytes_are_not_kept(start_sim, fleet: Fleet,
                                                                start_router) -> None:
    sim = await start_sim("m1", *INSTANT, "--output-tokens", "400")  # ~2.5 kB of text
    await cached_route(fleet, sim, max_entry_bytes=1024)
    router = await start_router(no_auth=True)
    await wait_route(router)
    client = router.client()
    assert [(await chat(client))[0] for _ in range(2)] == ["miss", "miss"]
    assert [(await chat(client, max_tokens=3))[0] for _ in range(2)] == ["miss", "hit"]
