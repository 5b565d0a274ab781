"""The capacity loop end to end: a pool at zero scales up on the router's cold demand, serves the
SDK, and goes back to zero when idle; a Spot notice on one worker brings a replacement up with no
failed request. Real router, control plane, agents, simulators and Redis; the local provider."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai

from control_plane.providers.processes import ProcessRef
from tests.capacity.e2e.conftest import Stack
from tests.support.waiting import eventually

MESSAGES = [{"role": "user", "content": "hi"}]


async def _agent_pids(stack: Stack) -> list[ProcessRef]:
    refs = []
    for instance in await stack.cp.capacity.providers["local"].list_instances():
        pid = instance.details.get("agent_pid")
        if pid and (ref := ProcessRef.of(int(pid))) is not None:
            refs.append(ref)
    return refs


async def test_a_pool_scales_from_zero_on_demand_serves_and_returns_to_zero(
        capacity_stack: Any) -> None:
    async with capacity_stack() as stack:
        await stack.put_pool("chat", model_id="org/chat", min_replicas=0, max_replicas=2,
                             scale_to_zero_after_s=3)
        reply = await stack.admin.put("/v1/routes/org/chat", json={"targets": [{"pool": "chat"}]})
        assert reply.status_code == 201
        assert (await stack.status("chat"))["desired_replicas"] == 0
        key = await stack.key()

        async with openai.AsyncOpenAI(base_url=stack.router_url + "/v1", api_key=key,
                                      max_retries=0, timeout=60) as client:
            # The router learns of the new route through the store's notification: asynchronous.
            async def route_known() -> bool:
                return "org/chat" in [m.id async for m in client.models.list()]
            await eventually(route_known, timeout=10, message="router knows the route")
            raw = await client.chat.completions.with_raw_response.create(
                model="org/chat", messages=MESSAGES)
            assert raw.headers["x-flotilla-target"] == "pool:chat"
            assert raw.parse().choices[0].message.content
        ups = await stack.events("autoscaler.scale_up")
        assert ups and "cold demand" in ups[-1]["message"]
        assert ups[-1]["data"]["inputs"]["live"] == 0
        status = await stack.status("chat")
        assert status["ready_replicas"] == 1 and status["desired_replicas"] == 1
        agents = await _agent_pids(stack)
        assert len(agents) == 1

        # Idle for scale_to_zero_after_s: drained, terminated, its processes gone.
        async def at_zero() -> bool:
            s = await stack.status("chat")
            return s["desired_replicas"] == 0 and not [
                i for i in s["instances"] if i["state"] != "terminated"]
        await eventually(at_zero, timeout=60, message="scaled to zero")
        downs = await stack.events("autoscaler.scale_down")
        assert downs and "idle" in downs[-1]["message"]
        assert await stack.events("instance.terminated")
        await eventually(lambda: not any(a.alive() for a in agents), timeout=40,
                    message="agent processes gone")
        cost = (await stack.admin.get("/v1/cost")).json()
        assert cost["pools"]["chat"]["instances"] == 0


async def test_a_spot_notice_brings_a_replacement_with_no_failed_request(
        capacity_stack: Any) -> None:
    async with capacity_stack() as stack:
        await stack.put_pool("chat", model_id="org/chat", min_replicas=2, max_replicas=3,
                             scale_to_zero_after_s=None)
        await stack.admin.put("/v1/routes/org/chat", json={"targets": [{"pool": "chat"}]})
        key = await stack.key()
        await eventually(lambda: _ready(stack, 2), timeout=90, message="two ready replicas")
        first = {i.instance_id for i in stack.cp.capacity.book.instances()}
        failures: list[Exception] = []
        served = 0
        stop = asyncio.Event()

        async with openai.AsyncOpenAI(base_url=stack.router_url + "/v1", api_key=key,
                                      max_retries=0, timeout=30) as client:
            async def load() -> None:
                nonlocal served
                while not stop.is_set():
                    try:
                        await client.chat.completions.create(model="org/chat",
                                                              messages=MESSAGES)
                        served += 1
                    except openai.APIError as exc:
                        failures.append(exc)
                    await asyncio.sleep(0.02)

            workers = [asyncio.create_task(load()) for _ in range(3)]
            try:
                await asyncio.sleep(0.5)
                doomed = sorted(first)[0]
                stack.imds.of(doomed).interrupt(time.time() + 120)
                interrupted = await eventually(lambda: stack.events("capacity.interrupted"),
                                          timeout=40, message="interruption noticed")
                assert interrupted[0]["subject"] == doomed
                assert interrupted[0]["data"]["reason"] == "spot_interruption"

                async def replaced() -> bool:
                    ids = {i.instance_id for i in stack.cp.capacity.book.instances()}
                    return doomed not in ids and len(ids - first) >= 1 and await _ready(stack, 2)
                await eventually(replaced, timeout=90, message="replacement ready, old one gone")
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.gather(*workers)
        assert failures == []
        assert served > 10
        launched = await stack.events("instance.launched")
        assert len(launched) == 3
        view = stack.cp.capacity.pool_view("chat")
        assert any(i.state == "terminated" and i.instance_id == doomed for i in view.instances)
        metrics = (await stack.admin.get("/metrics")).text
        assert 'flotilla_spot_interruptions_total{instance_type="sim-gpu",pool="chat"} 1.0' \
            in metrics
        assert 'flotilla_pool_ready_replicas{pool="chat"} 2.0' in metrics


async def _ready(stack: Stack, count: int) -> bool:
    return (await stack.status("chat"))["ready_replicas"] == count
