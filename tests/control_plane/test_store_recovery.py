"""Losing the store (Redis flushed or restarted empty) and restarting the control plane."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from fleet.store import KEYS, WORKER_TOKENS
from tests.control_plane.conftest import (
    Running,
    bearer,
    enroll,
    eventually,
    heartbeat,
    ready_ids,
    register_body,
)
from tests.support.readyz_server import ReadyzServer


async def make_ready(running: Running, agent: ReadyzServer, instance_id: str = "i-1"
                     ) -> tuple[str, str]:
    worker_id, token = await enroll(running, instance_id, agent_url=agent.url)
    assert (await heartbeat(running, worker_id, token)).status_code == 200
    await eventually(lambda: ready_ids(running), message="ready")
    return worker_id, token


async def flushall(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def test_a_flushed_store_is_reseeded_from_memory(
        open_control_plane: Any, redis_factory: Any, agent: ReadyzServer) -> None:
    server = redis_factory()
    async with open_control_plane(server.url) as running:
        worker_id, token = await make_ready(running, agent)
        key = (await running.client.post("/v1/keys", json={"name": "team"},
                                         headers=running.admin)).json()
        epoch = await running.store.get_epoch()

        await flushall(server.url)
        await eventually(running.store.get_epoch, message="epoch restored")
        assert await running.store.get_epoch() == epoch
        assert await ready_ids(running) == {worker_id}
        assert (await running.store.get_worker(worker_id)).probe_passed_at is not None
        keys = await running.store.get_docs(KEYS)
        assert [(d["id"], d["key_hash"] == h) for h, d in keys.items()] == [(key["id"], True)]
        assert list(await running.store.get_docs(WORKER_TOKENS)) == ["i-1"]
        await eventually(lambda: _has_event(running, "store.reseeded"), message="event")
        # The agent notices nothing: its token and worker id still work.
        assert (await heartbeat(running, worker_id, token)).status_code == 200


async def test_agents_recover_when_the_control_plane_restarts_on_an_empty_store(
        open_control_plane: Any, redis_factory: Any, agent: ReadyzServer) -> None:
    server = redis_factory()
    async with open_control_plane(server.url) as running:
        worker_id, token = await make_ready(running, agent)
    await flushall(server.url)
    async with open_control_plane(server.url) as running:
        # The heartbeat is refused (the token is unknown now): the agent registers again,
        # presenting its old token, and receives a new one.
        assert (await heartbeat(running, worker_id, token)).status_code == 401
        reply = await running.client.post(
            "/v1/workers/register", json=register_body(worker_id=worker_id, agent_url=agent.url),
            headers=bearer(token))
        assert reply.status_code == 201, reply.text
        new_token = reply.json()["bootstrap_token"]
        assert new_token and new_token != token
        assert reply.json()["worker_id"] == worker_id
        assert (await heartbeat(running, worker_id, new_token)).status_code == 200
        await eventually(lambda: ready_ids(running), message="ready again")


async def test_a_control_plane_restart_keeps_workers_ready_and_tokens_valid(
        open_control_plane: Any, agent: ReadyzServer) -> None:
    async with open_control_plane() as running:
        worker_id, token = await make_ready(running, agent)
        await running.client.post("/v1/keys", json={"name": "kept"}, headers=running.admin)
    hits = agent.hits
    async with open_control_plane() as running:
        assert await ready_ids(running) == {worker_id}
        assert running.cp.registry.is_ready(worker_id)
        assert [k["name"] for k in (await running.client.get(
            "/v1/keys", headers=running.admin)).json()["data"]] == ["kept"]
        assert (await heartbeat(running, worker_id, token)).status_code == 200
        assert await ready_ids(running) == {worker_id}
        assert agent.hits == hits  # readiness came from the records, not a new probe
        assert "worker.expired" not in [e.kind for e in await running.store.recent_events()]


async def test_a_restart_after_a_long_outage_gives_workers_time_to_heartbeat(
        open_control_plane: Any, agent: ReadyzServer) -> None:
    async with open_control_plane(heartbeat_interval_s=0.5) as running:
        worker_id, token = await make_ready(running, agent)
    await asyncio.sleep(1.6)  # longer than three heartbeat intervals without a control plane
    async with open_control_plane(heartbeat_interval_s=0.5) as running:
        assert await ready_ids(running) == {worker_id}
        assert (await heartbeat(running, worker_id, token)).status_code == 200
        # Silent from now on: it expires three intervals after its last heartbeat.
        await eventually(lambda: _gone(running, worker_id), message="expired")


async def _gone(running: Running, worker_id: str) -> bool:
    return await running.store.get_worker(worker_id) is None


async def test_an_event_emitted_by_a_loop_finishing_during_shutdown_is_still_written(
        open_control_plane: Any) -> None:
    # The reconciler adopting an instance as the control plane stops: its store write completed
    # (redis-py can swallow the cancellation on Python 3.11, see control_plane/loops.py), so the
    # event it emits next must be written too, or the timeline never shows the adoption.
    async with open_control_plane() as running:
        cp = running.cp
        started = asyncio.Event()

        async def step_that_finishes_during_shutdown() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                cp.events.emit("instance.adopted", "adopted during shutdown", subject="inst_late")

        cp.tasks.start("late step", step_that_finishes_during_shutdown())
        await started.wait()
    events = await running.store.recent_events()
    assert ("instance.adopted", "inst_late") in [(e.kind, e.subject) for e in events]


async def _has_event(running: Running, kind: str) -> bool:
    return kind in [e.kind for e in await running.store.recent_events()]
