"""The fleet store goes away (or comes back empty): traffic continues from the local snapshot."""

from __future__ import annotations

import asyncio
import time

import httpx

from fleet.redis_store import RedisFleetStore
from tests.router.conftest import INSTANT, Fleet

MESSAGES = [{"role": "user", "content": "hello"}]


async def _readyz(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url + "/readyz")


async def _wait_readyz(url: str, predicate, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = await _readyz(url)
        if predicate(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz never matched: {response.status_code} {response.text}")
        await asyncio.sleep(0.05)


async def test_redis_stopped_mid_run_traffic_continues_from_the_snapshot(
        redis_factory, start_sim, start_router) -> None:
    server = redis_factory()
    store = RedisFleetStore(server.url, prefix="outage")
    await store.ensure_epoch("epoch-1")
    fleet = Fleet(store)
    sim = await start_sim("m1", *INSTANT)
    await fleet.add_worker(sim)
    key = await fleet.create_key("survivor", rpm=1000)
    router = await start_router(backend=store, max_snapshot_age_s=2.0)
    client = router.client(key)
    await client.chat.completions.create(model="m1", messages=MESSAGES)  # the key is cached

    results: list[str] = []

    async def traffic(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            done = await client.chat.completions.create(model="m1", messages=MESSAGES)
            results.append(done.choices[0].message.content or "")
            await asyncio.sleep(0.01)

    running = asyncio.create_task(traffic(3.0))
    await asyncio.sleep(0.3)
    server.stop()
    stale = await _wait_readyz(router.url, lambda r: r.json()["store"] == "unreachable")
    assert stale.status_code == 200  # the snapshot is still fresh enough
    assert stale.json()["serving_from_snapshot"] is True
    await running
    assert len(results) > 10 and all(results)
    # Past max_snapshot_age_s the router says it is not ready, and still serves what it can.
    unready = await _wait_readyz(router.url, lambda r: r.status_code == 503)
    assert "unreachable" in unready.json()["reason"]
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(router.url + "/metrics")).text
    assert "flotilla_router_store_up 0.0" in metrics
    assert (await client.chat.completions.create(model="m1", messages=MESSAGES)).choices

    # Redis comes back empty (no persistence): no epoch, so the router keeps its snapshot.
    server.start()
    empty = await _wait_readyz(router.url, lambda r: r.json()["store"] == "ok")
    assert empty.json()["epoch_missing"] is True and empty.json()["workers"] == 1
    assert (await client.chat.completions.create(model="m1", messages=MESSAGES)).choices
    # The control plane re-seeds it: the router takes the store's view again.
    await store.ensure_epoch("epoch-2")
    await fleet.add_worker(sim)
    back = await _wait_readyz(router.url, lambda r: r.json()["epoch_missing"] is False)
    assert back.status_code == 200 and back.json()["workers"] == 1
    await router.shutdown()  # before closing the store it uses
    await store.aclose()


async def test_router_started_while_the_store_is_down_is_not_ready_until_it_answers(
        redis_factory, start_router) -> None:
    server = redis_factory()
    store = RedisFleetStore(server.url, prefix="late")
    server.stop()
    router = await start_router(backend=store)
    response = await _readyz(router.url)
    assert response.status_code == 503
    assert response.json()["snapshot_age_s"] is None
    server.start()
    await store.ensure_epoch("e")
    await _wait_readyz(router.url, lambda r: r.status_code == 200)
    await router.shutdown()
    await store.aclose()
