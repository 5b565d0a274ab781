"""The fleet-store contract: every backend passes the same tests (Redis on a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fleet.memory_store import MemoryFleetStore
from fleet.redis_store import RedisFleetStore
from fleet.schemas import Event, WorkerRecord
from fleet.store import (
    POOLS,
    ROUTES,
    CountUpdate,
    FleetStore,
    StoreUnavailable,
    save_worker,
)
from tests.support.ports import free_port


def make_worker(worker_id: str = "w1", model_id: str = "m1", **overrides: object) -> WorkerRecord:
    values: dict[str, object] = dict(
        worker_id=worker_id, instance_id=f"i-{worker_id}", model_id=model_id, engine="vllm",
        url=f"http://127.0.0.1:9000/{worker_id}", agent_url="http://127.0.0.1:9080",
        registered_at=1000.0, last_heartbeat=1000.0, status="ready",
    )
    values.update(overrides)
    return WorkerRecord(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[FleetStore]:
    if request.param == "memory":
        backend: FleetStore = MemoryFleetStore()
    else:
        server = request.getfixturevalue("redis_server")
        backend = RedisFleetStore(server.url, prefix=key_prefix)
    yield backend
    await backend.aclose()


async def test_documents_round_trip_and_are_copies(store: FleetStore) -> None:
    assert await store.get_doc(ROUTES, "m") is None
    doc = {"targets": [{"pool": "p"}]}
    await store.put_doc(ROUTES, "m", doc)
    got = await store.get_doc(ROUTES, "m")
    assert got == doc
    got["targets"].append("mutated")  # type: ignore[index]
    assert await store.get_doc(ROUTES, "m") == doc
    assert await store.get_docs(ROUTES) == {"m": doc}
    assert await store.get_docs(POOLS) == {}


async def test_put_doc_if_absent_only_writes_once(store: FleetStore) -> None:
    assert await store.put_doc_if_absent("worker_tokens", "i-1", {"h": "a"}) is True
    assert await store.put_doc_if_absent("worker_tokens", "i-1", {"h": "b"}) is False
    assert await store.get_doc("worker_tokens", "i-1") == {"h": "a"}


async def test_delete_doc_reports_whether_it_existed(store: FleetStore) -> None:
    await store.put_doc(POOLS, "p", {"model_id": "m"})
    assert await store.delete_doc(POOLS, "p") is True
    assert await store.delete_doc(POOLS, "p") is False
    assert await store.get_doc(POOLS, "p") is None


async def test_ready_sets_follow_saved_readiness(store: FleetStore) -> None:
    a, b, c = make_worker("a"), make_worker("b"), make_worker("c", model_id="m2")
    await store.save_workers([(a, True), (b, False), (c, True)])
    ready = await store.ready_workers()
    assert {m: [w.worker_id for w in ws] for m, ws in ready.items()} == {"m1": ["a"], "m2": ["c"]}
    await save_worker(store, b, ready=True)
    await save_worker(store, a.replace(status="draining"), ready=False)
    ready = await store.ready_workers()
    assert [w.worker_id for w in ready["m1"]] == ["b"]
    assert sorted(w.worker_id for w in await store.list_workers()) == ["a", "b", "c"]


async def test_saved_worker_keeps_every_fact(store: FleetStore) -> None:
    record = make_worker("x", queue_depth=7, gpu_util=0.5, ttft_p95_ms=123.5,
                         probe_passed_at=1001.0, drain_reason="scale_down", instance_type="g6")
    await save_worker(store, record, ready=False)
    assert await store.get_worker("x") == record
    assert await store.get_worker("missing") is None


async def test_delete_worker_removes_it_from_its_ready_set(store: FleetStore) -> None:
    await save_worker(store, make_worker("a"), ready=True)
    assert await store.delete_worker("a") is True
    assert await store.delete_worker("a") is False
    assert await store.ready_workers() == {}
    assert await store.list_workers() == []


async def test_events_are_newest_first_and_capped(store: FleetStore) -> None:
    for i in range(5):
        await store.add_event(Event(ts=float(i), kind="test", message=f"e{i}", subject="s",
                                    data={"i": i}))
    events = await store.recent_events(limit=3)
    assert [e.message for e in events] == ["e4", "e3", "e2"]
    assert events[0].data == {"i": 4}
    assert await store.recent_events(limit=0) == []


async def test_counters_add_up_and_return_totals(store: FleetStore) -> None:
    totals = await store.add_counts([CountUpdate("rl:k1:100", {"requests": 1, "tokens": 10}, 60),
                                     CountUpdate("rl:k2:100", {"requests": 2}, 60)])
    assert totals == [{"requests": 1, "tokens": 10}, {"requests": 2}]
    totals = await store.add_counts([CountUpdate("rl:k1:100", {"requests": 3, "tokens": 5}, 60)])
    assert totals == [{"requests": 4, "tokens": 15}]
    assert await store.get_counts("rl:k1:100") == {"requests": 4, "tokens": 15}
    assert await store.get_counts("rl:none") == {}


async def test_counters_and_values_expire(store: FleetStore) -> None:
    await store.add_counts([CountUpdate("short", {"n": 1}, 0.05)])
    await store.set_value("demand:p", b"1", 0.05)
    await store.set_value("kept", b"yes", 60)
    assert await store.get_value("demand:p") == b"1"
    await asyncio.sleep(0.12)
    assert await store.get_counts("short") == {}
    assert await store.get_value("demand:p") is None
    assert await store.get_value("kept") == b"yes"
    assert await store.delete_value("kept") is True
    assert await store.get_value("kept") is None


async def test_cache_entries_expire_and_the_least_recently_used_are_evicted(
        store: FleetStore) -> None:
    assert await store.cache_put("route-a", "k1", b"one", 60, max_entries=2) == 0
    await asyncio.sleep(0.005)
    assert await store.cache_put("route-a", "k2", b"two", 60, max_entries=2) == 0
    await asyncio.sleep(0.005)
    assert await store.cache_get("route-a", "k1") == b"one"  # k1 is now the most recent
    await asyncio.sleep(0.005)
    assert await store.cache_put("route-a", "k3", b"three", 60, max_entries=2) == 1
    assert await store.cache_get("route-a", "k2") is None
    assert await store.cache_get("route-a", "k1") == b"one"
    assert await store.cache_get("route-a", "k3") == b"three"
    assert await store.cache_get("route-b", "k1") is None  # spaces are separate
    await store.cache_put("route-b", "short", b"x", 0.05, max_entries=10)
    assert await store.cache_get("route-b", "short") == b"x"
    await asyncio.sleep(0.12)
    assert await store.cache_get("route-b", "short") is None


async def test_epoch_is_created_once(store: FleetStore) -> None:
    assert await store.get_epoch() is None
    assert await store.ensure_epoch("e1") == ("e1", True)
    assert await store.ensure_epoch("e2") == ("e1", False)
    assert await store.get_epoch() == "e1"


async def test_subscribers_receive_published_topics(store: FleetStore) -> None:
    async with store.subscribe() as subscription:
        received: list[str] = []

        async def read() -> None:
            async for topic in subscription:
                received.append(topic)
                if len(received) == 2:
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        await store.publish("workers")
        await store.publish("routes")
        await asyncio.wait_for(reader, timeout=5)
    assert received == ["workers", "routes"]


async def test_subscription_survives_quiet_periods_longer_than_the_command_timeout(
        redis_server, key_prefix: str) -> None:
    store = RedisFleetStore(redis_server.url, prefix=key_prefix, timeout_s=0.2)
    try:
        async with store.subscribe() as subscription:
            iterator = aiter(subscription)
            waiter = asyncio.create_task(anext(iterator))
            await asyncio.sleep(0.6)  # three command timeouts with nothing published
            assert not waiter.done(), waiter
            await store.publish("keys")
            assert await asyncio.wait_for(waiter, timeout=5) == "keys"
    finally:
        await store.aclose()


async def test_unreachable_redis_raises_store_unavailable(key_prefix: str) -> None:
    store = RedisFleetStore(f"redis://127.0.0.1:{free_port()}/0", prefix=key_prefix,
                            timeout_s=0.2)
    try:
        # wait_for only guards against a hang; the store must fail on its own, not time out here.
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.get_docs(ROUTES), timeout=30)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.ready_workers(), timeout=30)
    finally:
        await store.aclose()


async def test_redis_backend_namespaces_by_prefix(redis_server) -> None:
    first = RedisFleetStore(redis_server.url, prefix="ns-a")
    second = RedisFleetStore(redis_server.url, prefix="ns-b")
    try:
        await first.put_doc(ROUTES, "m", {"x": 1})
        assert await second.get_doc(ROUTES, "m") is None
        await first.delete_doc(ROUTES, "m")
    finally:
        await first.aclose()
        await second.aclose()
