"""Two router replicas share in-flight counts through their reports; the imbalance is bounded by
what the other replica started since its last report."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.router.conftest import Fleet, RouterServer

MESSAGES = [{"role": "user", "content": "hello"}]
# Streams of ~4 s: long enough to stay in flight while the test looks at the workers.
LONG = ("--ttft-ms", "0", "--itl-ms", "100", "--output-tokens", "40")


async def _hold_streams(router: RouterServer, count: int) -> list[asyncio.Task[None]]:
    async def one() -> None:
        stream = await router.client().chat.completions.create(model="m1", messages=MESSAGES,
                                                               stream=True)
        async for _ in stream:
            pass

    return [asyncio.create_task(one()) for _ in range(count)]


async def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("report_period_s", "expected"), [
    # Fresh reports: replica B sees A's 4 requests on w1 and sends all of its own to w2.
    (0.05, {"w1": 4, "w2": 4}),
    # A reports once at start and then not for 30 s: B balances blind, and the imbalance is
    # exactly the 4 requests A started since its last report (the documented bound).
    (30.0, {"w1": 6, "w2": 2}),
])
async def test_second_replica_balances_with_the_first_replicas_in_flight_requests(
        start_sim, fleet: Fleet, start_router, report_period_s: float,
        expected: dict[str, int]) -> None:
    sims = {"w1": await start_sim("m1", *LONG), "w2": await start_sim("m1", *LONG)}
    await fleet.add_worker(sims["w1"], worker_id="w1")
    await fleet.add_worker(sims["w2"], worker_id="w2", ready=False)
    a = await start_router(no_auth=True, report_period_s=report_period_s, router_id="router-a")
    b = await start_router(no_auth=True, router_id="router-b")
    tasks = await _hold_streams(a, 4)  # only w1 is ready: all four go there
    await sims["w1"].wait_stats(running=4)
    await fleet.set_ready("w2", True)
    await a.wait_workers(2)
    await b.wait_workers(2)
    if report_period_s < 1:
        await _wait_until(lambda: b.runtime.inflight.peer_counts().get("w1") == 4)
    tasks += await _hold_streams(b, 4)
    await sims["w2"].wait_stats(running=expected["w2"], received=expected["w2"])
    stats = {name: await sim.stats() for name, sim in sims.items()}
    assert {name: s["running"] for name, s in stats.items()} == expected
    if report_period_s < 1:
        # Each replica's view: its own live count plus the other's report.
        await _wait_until(lambda: a.runtime.inflight.outstanding("w2") == 4)
        assert b.runtime.inflight.outstanding("w1") == 4
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_replica_that_stops_reporting_is_no_longer_counted(start_sim, fleet: Fleet,
                                                                   start_router) -> None:
    sim = await start_sim("m1", *LONG)
    await fleet.add_worker(sim, worker_id="w1")
    b = await start_router(no_auth=True, router_id="router-b")
    # A report frozen in the past, as a crashed replica would leave it.
    await fleet.store.put_doc("routers", "router-dead", {
        "router_id": "router-dead", "ts": time.time(), "started_at": time.time(),
        "inflight": {"w1": 50}, "circuits": {}, "demand": {}})
    await _wait_until(lambda: b.runtime.inflight.outstanding("w1") == 50)
    # peer_stale_s is max(4 periods, 1 s): the unchanged report is dropped after it.
    await _wait_until(lambda: b.runtime.inflight.outstanding("w1") == 0, timeout=5)


async def test_replica_withdraws_its_report_at_shutdown(start_sim, fleet: Fleet,
                                                        start_router) -> None:
    router = await start_router(no_auth=True, router_id="router-leaving")
    for _ in range(100):
        if await fleet.store.get_doc("routers", "router-leaving") is not None:
            break
        await asyncio.sleep(0.02)
    assert await fleet.store.get_doc("routers", "router-leaving") is not None
    await router.shutdown()
    assert await fleet.store.get_doc("routers", "router-leaving") is None
