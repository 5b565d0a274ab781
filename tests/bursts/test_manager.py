"""The burst manager over a real store with recorded capacity observations: floors, one burst per
pool, persistence across a restart (real redis-server) and reseeding after a flush."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from control_plane.bursts.records import BurstRequest
from control_plane.errors import Conflict, NotFound, Unprocessable
from fleet.memory_store import MemoryFleetStore
from fleet.redis_store import RedisFleetStore
from fleet.store import BURSTS, ROUTERS
from tests.bursts.recorded import Clock, RecordedCapacity, RecordedInstance, make_harness


def request(**fields: Any) -> BurstRequest:
    values: dict[str, Any] = {"pool": "p", "replicas": 2, "duration_s": 600.0}
    values.update(fields)
    return BurstRequest(**values)


async def test_a_burst_holds_a_floor_while_it_runs_and_releases_it_at_the_end() -> None:
    h = make_harness(MemoryFleetStore())
    burst = await h.manager.create(request(duration_s=60.0))
    assert burst.state == "requesting_spot"
    assert h.capacity.floors == {("p", burst.id): 2}

    h.view("p", desired=2, starting=2,
           instances=(RecordedInstance("i-1", "starting"), RecordedInstance("i-2", "launching")))
    await h.manager.tick()
    assert h.manager.get(burst.id).state == "instance_starting"

    h.view("p", desired=2, ready=2)
    h.costs.spent["p"] = 0.25
    h.clock.now += 30
    await h.manager.tick()
    running = h.manager.get(burst.id)
    assert (running.state, running.ready_replicas, running.cost_usd) == ("ready", 2, 0.25)
    assert h.costs.calls[-1] == ("p", burst.created_at)  # spend since the burst started

    h.clock.now += 30
    await h.manager.tick()
    ended = h.manager.get(burst.id)
    assert (ended.state, ended.end_reason) == ("completed", "duration")
    assert h.capacity.floors == {}


async def test_an_interrupted_instance_in_the_view_moves_the_burst_to_interrupted() -> None:
    h = make_harness(MemoryFleetStore())
    burst = await h.manager.create(request())
    h.view("p", desired=2, ready=2)
    await h.manager.tick()
    h.view("p", desired=2, ready=1,
           instances=(RecordedInstance("i-1", "ready"), RecordedInstance("i-2", "interrupted")))
    await h.manager.tick()
    record = h.manager.get(burst.id)
    assert record.state == "interrupted" and record.interruptions == 1
    h.view("p", desired=2, ready=1, instances=(RecordedInstance("i-1", "ready"),
                                               RecordedInstance("i-3", "launching")))
    await h.manager.tick()
    assert h.manager.get(burst.id).state == "resuming"


async def test_one_running_burst_per_pool() -> None:
    h = make_harness(MemoryFleetStore())
    first = await h.manager.create(request())
    with pytest.raises(Conflict):
        await h.manager.create(request())
    await h.manager.cancel(first.id)
    h.clock.now += 1
    second = await h.manager.create(request())
    assert second.id != first.id
    assert [r.id for r in h.manager.records()][0] == second.id  # newest first


async def test_cancel_ends_at_once_and_is_idempotent() -> None:
    h = make_harness(MemoryFleetStore())
    burst = await h.manager.create(request())
    cancelled = await h.manager.cancel(burst.id)
    assert (cancelled.state, cancelled.end_reason) == ("completed", "cancelled")
    again = await h.manager.cancel(burst.id)
    assert again == cancelled
    assert h.capacity.floors == {}
    with pytest.raises(NotFound):
        await h.manager.cancel("burst_unknown")


async def test_bad_requests_change_nothing() -> None:
    store = MemoryFleetStore()
    h = make_harness(store)
    with pytest.raises(NotFound):
        await h.manager.create(request(pool="nope"))
    with pytest.raises(Unprocessable):
        await h.manager.create(request(replicas=5))  # the pool's max_replicas is 4
    with pytest.raises(Unprocessable):
        await h.manager.create(request(duration_s=None))
    assert h.manager.records() == [] and h.capacity.floors == {}
    assert await store.get_docs(BURSTS) == {}


async def test_idle_timeout_uses_router_demand_reports() -> None:
    store = MemoryFleetStore()
    h = make_harness(store)
    burst = await h.manager.create(request(duration_s=None, idle_timeout_s=60.0))
    h.view("p", desired=2, ready=1)
    await h.manager.tick()  # ready: the idle clock starts
    router_started = h.clock.now - 5

    async def report(requests: int) -> None:
        await store.put_doc(ROUTERS, "r1", {"router_id": "r1", "ts": h.clock.now,
                                            "started_at": router_started,
                                            "demand": {"p": {"requests": requests}}})

    await report(10)
    h.clock.now += 50
    await h.manager.tick()
    await report(12)  # traffic: the pool is not idle
    h.clock.now += 50
    await report(12)
    await h.manager.tick()
    assert h.manager.get(burst.id).state == "ready"
    h.clock.now += 59
    await report(12)
    await h.manager.tick()
    assert h.manager.get(burst.id).state == "ready"
    h.clock.now += 2
    await report(12)
    await h.manager.tick()
    assert h.manager.get(burst.id).end_reason == "idle"


async def test_events_reach_the_timeline_with_the_burst_as_subject() -> None:
    store = MemoryFleetStore()
    h = make_harness(store)
    task = asyncio.create_task(h.writer.run())
    try:
        burst = await h.manager.create(request())
        h.view("p", desired=2, ready=1)
        await h.manager.tick()
        await h.writer.committed(2.0)
        events = await store.recent_events(10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    kinds = [(e.kind, e.subject) for e in reversed(events)]
    assert kinds == [("burst.created", burst.id), ("burst.ready", burst.id)]


async def test_a_restarted_control_plane_resumes_a_running_burst(
        redis_server: Any, key_prefix: str) -> None:
    store = RedisFleetStore(redis_server.url, prefix=key_prefix)
    try:
        clock = Clock()
        first = make_harness(store, clock=clock)
        burst = await first.manager.create(request(duration_s=120.0))
        first.view("p", desired=2, ready=2)
        await first.manager.tick()

        # a new process: new manager, new capacity manager (no floors yet), same Redis
        capacity = RecordedCapacity()
        second = make_harness(store, clock=clock, capacity=capacity)
        assert await second.manager.load() == 1
        resumed = second.manager.get(burst.id)
        assert resumed == first.manager.get(burst.id)
        assert resumed.state == "ready"
        assert capacity.floors == {("p", burst.id): 2}
        clock.now += 120
        second.view("p", desired=2, ready=2)
        await second.manager.tick()
        assert second.manager.get(burst.id).end_reason == "duration"
        assert capacity.floors == {}
    finally:
        await store.aclose()


async def test_bursts_are_rewritten_after_the_store_lost_them(
        redis_server: Any, key_prefix: str) -> None:
    store = RedisFleetStore(redis_server.url, prefix=key_prefix)
    try:
        h = make_harness(store)
        burst = await h.manager.create(request())
        await store.delete_doc(BURSTS, burst.id)  # what a flush does to our keys
        assert await h.manager.docs.reseed() == 1
        doc = await store.get_doc(BURSTS, burst.id)
        assert doc is not None and doc["state"] == "requesting_spot"
    finally:
        await store.aclose()
