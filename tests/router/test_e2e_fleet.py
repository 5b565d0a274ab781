"""End to end with every real part: control plane, worker agents beside simulators, the router,
Redis, and the official SDK. Keys come from the control plane's admin API; workers enroll,
heartbeat and pass the control plane's probes before the router may use them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

ADMIN_TOKEN = "admin-token-for-router-e2e"
MODEL = "org/model"
MESSAGES = [{"role": "user", "content": "hello"}]


class FleetStack:
    def __init__(self, processes: Callable[..., ManagedProcess], redis_url: str,
                 prefix: str) -> None:
        self.start = processes
        self.env = {"REDIS_URL": redis_url, "STORE_PREFIX": prefix}
        self.control_plane_url = ""
        self.sims: list[tuple[ManagedProcess, str]] = []
        self.agents: list[ManagedProcess] = []

    async def control_plane(self) -> str:
        port = free_port()
        proc = self.start("control_plane", "--host", "127.0.0.1", "--port", str(port),
                          "--heartbeat-interval", "0.3", "--probe-interval", "0.2",
                          "--probe-failure-threshold", "1",
                          env={**self.env, "ADMIN_TOKEN": ADMIN_TOKEN}, name="control-plane")
        self.control_plane_url = f"http://127.0.0.1:{port}"
        await proc.wait_http(self.control_plane_url + "/healthz", timeout=30)
        return self.control_plane_url

    async def worker(self, index: int, *sim_args: str) -> tuple[ManagedProcess, str]:
        sim_port, agent_port = free_port(), free_port()
        sim = self.start("simulator", "--host", "127.0.0.1", "--port", str(sim_port),
                         "--model", MODEL, *sim_args, name=f"sim-{index}")
        sim_url = f"http://127.0.0.1:{sim_port}"
        await sim.wait_http(sim_url + "/health", timeout=30)
        agent = self.start("worker_agent", "--host", "127.0.0.1", "--port", str(agent_port),
                           env={"MODEL_ID": MODEL, "INSTANCE_ID": f"inst-{index}",
                                "ENGINE_URL": sim_url, "CONTROL_PLANE_URL":
                                self.control_plane_url, "HEARTBEAT_INTERVAL_S": "0.3",
                                "IMDS_URL": "", "ENGINE_POLL_INTERVAL_S": "0.1",
                                "CONTROL_PLANE_BACKOFF_MAX_S": "0.5"},
                           name=f"agent-{index}")
        self.sims.append((sim, sim_url))
        self.agents.append(agent)
        return sim, sim_url

    async def router(self) -> str:
        port = free_port()
        proc = self.start("router", "--host", "127.0.0.1", "--port", str(port),
                          "--refresh-period", "0.2", "--report-period", "0.1",
                          "--backoff-base", "0.01", "--backoff-max", "0.05",
                          env=self.env, name="router")
        url = f"http://127.0.0.1:{port}"
        await proc.wait_http(url + "/readyz", timeout=30)
        return url

    async def create_key(self) -> str:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(self.control_plane_url + "/v1/keys",
                                         json={"name": "e2e", "models": None, "rpm": None,
                                               "tpm": None},
                                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 201, response.text
        return response.json()["key"]


async def _wait_workers(router_url: str, count: int, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            body = (await client.get(router_url + "/readyz")).json()
            if body["workers"] == count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"router sees {body['workers']} workers, not {count}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def fleet_stack(processes, redis_server, key_prefix: str) -> FleetStack:
    return FleetStack(processes, redis_server.url, key_prefix)


async def test_sdk_through_router_agents_and_control_plane(fleet_stack: FleetStack) -> None:
    await fleet_stack.control_plane()
    await fleet_stack.worker(1, "--ttft-ms", "0", "--itl-ms", "0")
    await fleet_stack.worker(2, "--ttft-ms", "0", "--itl-ms", "0")
    router_url = await fleet_stack.router()
    key = await fleet_stack.create_key()
    await _wait_workers(router_url, 2)

    async with openai.AsyncOpenAI(base_url=router_url + "/v1", api_key=key,
                                  max_retries=0) as client:
        done = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert done.model == MODEL and done.choices[0].message.content
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES,
                                                      stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert [m.id for m in (await client.models.list()).data] == [MODEL]

    def sync_calls() -> str:
        with openai.OpenAI(base_url=router_url + "/v1", api_key=key, max_retries=0) as client:
            text = client.completions.create(model=MODEL, prompt="hi").choices[0].text
            streamed = "".join(c.choices[0].text for c in client.completions.create(
                model=MODEL, prompt="hi", stream=True) if c.choices)
            return text + streamed

    assert await asyncio.to_thread(sync_calls)
    # Both enrolled workers took traffic.
    counts = []
    async with httpx.AsyncClient(timeout=5) as client:
        for _, url in fleet_stack.sims:
            counts.append((await client.get(url + "/admin/stats")).json()["received"])
    assert all(count > 0 for count in counts), counts


async def test_worker_killed_under_load_through_the_whole_stack(fleet_stack: FleetStack) -> None:
    await fleet_stack.control_plane()
    paced = ("--ttft-ms", "20", "--itl-ms", "10", "--output-tokens", "20")
    doomed, doomed_url = await fleet_stack.worker(1, *paced)
    await fleet_stack.worker(2, *paced)
    router_url = await fleet_stack.router()
    key = await fleet_stack.create_key()
    await _wait_workers(router_url, 2)
    failures: list[Exception] = []
    silent_streams = 0

    async with openai.AsyncOpenAI(base_url=router_url + "/v1", api_key=key,
                                  max_retries=0) as client:
        async def plain() -> None:
            for _ in range(10):
                try:
                    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                except openai.APIError as exc:
                    failures.append(exc)

        async def streamed() -> None:
            nonlocal silent_streams
            for _ in range(5):
                finished = False
                try:
                    stream = await client.chat.completions.create(model=MODEL,
                                                                  messages=MESSAGES, stream=True)
                    async for chunk in stream:
                        if chunk.choices and chunk.choices[0].finish_reason:
                            finished = True
                except openai.APIError:
                    continue  # ended with the router's error event: not silent
                if not finished:
                    silent_streams += 1

        async def kill() -> None:
            async with httpx.AsyncClient(timeout=5) as http:
                for _ in range(400):
                    stats = (await http.get(doomed_url + "/admin/stats")).json()
                    if stats["running"] >= 2:
                        break
                    await asyncio.sleep(0.02)
            doomed.kill()

        await asyncio.gather(*[plain() for _ in range(6)], *[streamed() for _ in range(3)],
                             kill())
    assert failures == []
    assert silent_streams == 0
    # The control plane notices the dead engine (probe) and the router's snapshot follows.
    await _wait_workers(router_url, 1)
