"""Draining end to end: Spot notices from a fake IMDSv2, SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import httpx
import openai
import pytest

from tests.support.ports import free_port
from tests.worker_agent.conftest import ADMIN_TOKEN, Stack, eventually, is_ready, worker_of


async def test_a_spot_notice_drains_reports_the_deadline_deregisters_and_exits_zero(
        stack: Stack, redis_server, key_prefix: str, fake_imds) -> None:
    imds, imds_url = fake_imds
    cp = stack.control_plane(redis_server.url, key_prefix)
    sim = stack.sim()
    store = stack.store(redis_server.url, key_prefix)
    # A drain that lasts a few seconds (settle time), so both notices land inside it; a short
    # IMDS token TTL, so the watcher renews its session token along the way. No INSTANCE_ID:
    # on EC2 the agent takes the instance id from IMDS.
    agent = stack.agent(engine_url=sim.url, control_plane=cp.url, IMDS_URL=imds_url,
                        IMDS_POLL_INTERVAL_S="0.1", IMDS_TOKEN_TTL_S="1", INSTANCE_ID="",
                        DRAIN_SETTLE_S="2", DRAIN_DEADLINE_MARGIN_S="1")
    instance = imds.instance_id
    record = await eventually(lambda: worker_of(store, instance), what="worker record")
    await eventually(lambda: is_ready(store, record.worker_id), what="ready")
    assert (await worker_of(store, instance)).drain_reason is None  # type: ignore[union-attr]

    imds.recommend_rebalance()

    async def draining(reason: str) -> bool:
        current = await worker_of(store, instance)
        return current is not None and current.status == "draining" and \
            current.drain_reason == reason

    await eventually(lambda: draining("rebalance"), what="draining on the rebalance notice")
    assert not await is_ready(store, record.worker_id)
    response = await stack.readyz(agent)
    assert response.status_code == 503 and response.json()["reason"] == "draining (rebalance)"

    deadline = time.time() + 30
    imds.interrupt(deadline)
    await eventually(lambda: draining("spot_interruption"), what="the interruption notice")
    current = await worker_of(store, instance)
    assert current is not None and current.drain_deadline == pytest.approx(deadline, abs=1.5)

    assert await agent.proc.wait_exit(timeout=30) == 0
    assert await worker_of(store, instance) is None  # deregistered, not left to expire
    assert imds.requests["token"] >= 2  # 1 s tokens were renewed
    assert imds.requests["unauthorized"] <= 2
    log = agent.proc.log_text()
    assert "Spot rebalance recommendation" in log and "Spot interruption notice" in log
    assert "deregistered worker" in log


async def test_sigterm_lets_in_flight_requests_finish_before_stopping_the_engine(
        stack: Stack, redis_server, key_prefix: str) -> None:
    cp = stack.control_plane(redis_server.url, key_prefix)
    store = stack.store(redis_server.url, key_prefix)
    engine_port = free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    engine_cmd = (f"{sys.executable} -m simulator --kind vllm --host 127.0.0.1 "
                  f"--port {engine_port} --model org/model --ttft-ms 50 --itl-ms 60")
    agent = stack.agent(engine_url=engine_url, control_plane=cp.url,
                        extra=("--engine-cmd", engine_cmd))
    record = await eventually(lambda: worker_of(store), what="worker record", timeout=30)
    await eventually(lambda: is_ready(store, record.worker_id), what="ready", timeout=30)

    client = openai.AsyncOpenAI(base_url=engine_url + "/v1", api_key="unused", max_retries=0,
                                timeout=60)
    finished_at: list[float] = []

    async def ask() -> openai.types.chat.ChatCompletion:
        answer = await client.chat.completions.create(
            model="org/model", messages=[{"role": "user", "content": "hi"}], max_tokens=30)
        finished_at.append(time.monotonic())
        return answer

    requests = [asyncio.create_task(ask()) for _ in range(3)]
    running = 'flotilla_agent_engine_requests_running'

    async def all_running() -> bool:
        return (await stack.metric(agent, running) or 0) >= 3

    await eventually(all_running, what="requests running in the engine")
    agent.proc.send_signal(signal.SIGTERM)
    answers = await asyncio.gather(*requests)
    code = await agent.proc.wait_exit(timeout=30)
    exited_at = time.monotonic()
    await client.close()

    assert code == 0
    assert all(a.usage is not None and a.usage.completion_tokens == 30 for a in answers)
    assert all(a.choices[0].finish_reason == "length" for a in answers)
    assert max(finished_at) <= exited_at
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(engine_url + "/health")  # the supervised engine was stopped
    assert await worker_of(store) is None
    log = agent.proc.log_text()
    assert "draining (sigterm)" in log and "stopping the engine" in log


async def test_a_drain_asked_by_the_control_plane_ends_in_deregistration_and_exit_zero(
        stack: Stack, redis_server, key_prefix: str) -> None:
    cp = stack.control_plane(redis_server.url, key_prefix)
    sim = stack.sim()
    store = stack.store(redis_server.url, key_prefix)
    agent = stack.agent(engine_url=sim.url, control_plane=cp.url)
    record = await eventually(lambda: worker_of(store), what="worker record")
    await eventually(lambda: is_ready(store, record.worker_id), what="ready")

    response = await stack.http.post(f"{cp.url}/v1/workers/{record.worker_id}/drain",
                                     json={"reason": "scale_down"},
                                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text

    async def agent_draining() -> bool:
        reply = await stack.readyz(agent)
        return reply.status_code == 503 and reply.json()["reason"] == "draining (control_plane)"

    await eventually(agent_draining, what="the agent to start draining")
    assert await agent.proc.wait_exit(timeout=30) == 0
    assert await worker_of(store) is None
    log = agent.proc.log_text()
    assert "draining (control_plane)" in log and "deregistered worker" in log
