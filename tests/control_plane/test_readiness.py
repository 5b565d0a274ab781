"""Readiness: fresh heartbeat + agent says ready + the control plane's own /readyz probe passed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.control_plane.conftest import (
    Running,
    enroll,
    eventually,
    heartbeat,
    ready_ids,
)
from tests.support.readyz_server import ReadyzServer


async def kinds(running: Running) -> list[str]:
    return [e.kind for e in reversed(await running.store.recent_events())]


async def test_heartbeat_updates_the_record_and_the_ready_set(
        open_control_plane: Any, agent: ReadyzServer) -> None:
    async with open_control_plane() as running:
        worker_id, token = await enroll(running, agent_url=agent.url)
        record = await running.store.get_worker(worker_id)
        assert record.status == "starting"
        assert await ready_ids(running) == set()

        reply = await heartbeat(running, worker_id, token, status="starting", queue_depth=3)
        assert reply.status_code == 200
        assert reply.json() == {"heartbeat_interval_s": 10.0, "drain": False}
        assert (await running.store.get_worker(worker_id)).queue_depth == 3
        assert agent.hits == 0  # an agent that says it is starting is not probed

        await heartbeat(running, worker_id, token, queue_depth=5, inflight=2, gpu_util=0.5)
        await eventually(lambda: ready_ids(running), message="worker in the ready set")
        record = await running.store.get_worker(worker_id)
        assert (record.status, record.queue_depth, record.inflight, record.gpu_util) == (
            "ready", 5, 2, 0.5)
        assert record.probe_passed_at is not None
        assert agent.hits == 1
        assert "worker.ready" in await kinds(running)


async def test_a_failing_probe_keeps_the_worker_out_until_it_passes(
        open_control_plane: Any, agent: ReadyzServer) -> None:
    agent.set(503, "engine loading")
    async with open_control_plane(probe_interval_s=0.1) as running:
        worker_id, token = await enroll(running, agent_url=agent.url)
        await heartbeat(running, worker_id, token)
        await eventually(lambda: agent.hits >= 2, message="probes")
        record = await running.store.get_worker(worker_id)
        assert record.probe_failures >= 1
        assert "engine loading" in record.probe_error
        assert await ready_ids(running) == set()
        view = (await running.client.get(f"/v1/workers/{worker_id}",
                                         headers=running.admin)).json()
        assert view["ready"] is False
        assert "readiness probe" in view["reason"]

        agent.set(200)
        await eventually(lambda: ready_ids(running), message="ready after the probe passes")
        agent.set(503, "engine died")
        await eventually(lambda: _empty(ready_ids(running)), message="out after probe fails")
        events = await running.store.recent_events()
        not_ready = [e for e in events if e.kind == "worker.not_ready"]
        assert not_ready and "engine died" in not_ready[0].message


async def _empty(value: Any) -> bool:
    return not await value


async def test_an_unreachable_agent_is_not_ready(open_control_plane: Any) -> None:
    async with open_control_plane(probe_interval_s=0.1) as running:
        worker_id, token = await enroll(running, agent_url="http://127.0.0.1:9")
        await heartbeat(running, worker_id, token)
        record = await eventually(
            lambda: _probed(running, worker_id), message="a failed probe on record")
        assert "failed" in record.probe_error or "timed out" in record.probe_error
        assert await ready_ids(running) == set()


async def _probed(running: Running, worker_id: str) -> Any:
    record = await running.store.get_worker(worker_id)
    return record if record and record.probe_failures else None


async def test_silent_workers_expire_after_three_intervals(
        open_control_plane: Any, agent: ReadyzServer) -> None:
    async with open_control_plane(heartbeat_interval_s=0.1) as running:
        worker_id, token = await enroll(running, agent_url=agent.url)
        await heartbeat(running, worker_id, token)
        await eventually(lambda: ready_ids(running), message="ready")
        await eventually(lambda: _gone(running, worker_id), message="expired")
        assert await ready_ids(running) == set()
        assert "worker.expired" in await kinds(running)
        reply = await heartbeat(running, worker_id, token)
        assert reply.status_code == 404  # the agent registers again


async def _gone(running: Running, worker_id: str) -> bool:
    return await running.store.get_worker(worker_id) is None


async def test_drain_request_reaches_the_worker_in_its_heartbeat_reply(
        open_control_plane: Any, agent: ReadyzServer) -> None:
    async with open_control_plane() as running:
        worker_id, token = await enroll(running, agent_url=agent.url)
        await heartbeat(running, worker_id, token)
        await eventually(lambda: ready_ids(running), message="ready")

        drained = await running.client.post(f"/v1/workers/{worker_id}/drain",
                                            headers=running.admin)
        assert drained.status_code == 200, drained.text
        assert drained.json()["ready"] is False
        assert drained.json()["draining"] is True
        assert await ready_ids(running) == set()
        reply = await heartbeat(running, worker_id, token)
        assert reply.json()["drain"] is True

        await heartbeat(running, worker_id, token, status="draining")
        assert (await kinds(running)).count("worker.draining") == 1


async def test_agent_reported_drain_takes_the_worker_out_at_once(
        open_control_plane: Any, agent: ReadyzServer) -> None:
    async with open_control_plane() as running:
        worker_id, token = await enroll(running, agent_url=agent.url)
        await heartbeat(running, worker_id, token)
        await eventually(lambda: ready_ids(running), message="ready")
        await heartbeat(running, worker_id, token, status="draining",
                        drain_reason="spot_interruption", drain_deadline=2_000_000_000.0)
        assert await ready_ids(running) == set()
        record = await running.store.get_worker(worker_id)
        assert (record.drain_reason, record.drain_deadline) == ("spot_interruption",
                                                                2_000_000_000.0)


async def test_plain_heartbeats_do_not_notify_routers(
        open_control_plane: Any, agent: ReadyzServer) -> None:
    async with open_control_plane() as running:
        worker_id, token = await enroll(running, agent_url=agent.url)
        await heartbeat(running, worker_id, token)
        await eventually(lambda: ready_ids(running), message="ready")
        assert await running.cp.writer.drained(5)  # the `ready` notification is out
        async with running.store.subscribe() as subscription:
            topics: list[str] = []

            async def collect() -> None:
                async for topic in subscription:
                    topics.append(topic)

            task = asyncio.create_task(collect())
            await asyncio.sleep(0.1)
            for depth in range(5):
                assert (await heartbeat(running, worker_id, token,
                                        queue_depth=depth)).status_code == 200
            await running.client.post(f"/v1/workers/{worker_id}/drain", headers=running.admin)
            await eventually(lambda: topics, message="one notification")
            await asyncio.sleep(0.2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert topics == ["workers"]
