"""End to end: a burst moves a route's traffic from a paid API to a pool and back.

Real parts: Redis, the control plane as a process with the local capacity provider (it starts
agent + simulator processes for the pool), the router as a process, a simulator standing in for
the paid API, the official SDK as the client. The route is [pool P, upstream]; which target
served each request is read from the response's `x-flotilla-target` header and cross-checked
with the paid API's own request count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

ADMIN = "admin-token-for-burst-e2e"
MODEL = "org/burst-model"
MESSAGES = [{"role": "user", "content": "hello"}]
FAST = "--ttft-ms 0 --itl-ms 0 --output-tokens 4 --load-s 0"


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.2)


async def test_a_burst_moves_traffic_to_the_pool_and_back_to_the_paid_api(
        processes: Callable[..., ManagedProcess], redis_server: Any, key_prefix: str,
        tmp_path: Path) -> None:
    env = {"REDIS_URL": redis_server.url, "STORE_PREFIX": key_prefix}
    paid_port, cp_port, router_port = free_port(), free_port(), free_port()
    paid = processes("simulator", "--host", "127.0.0.1", "--port", str(paid_port),
                     "--model", "paid-model", *FAST.split(), name="paid-api")
    paid_url = f"http://127.0.0.1:{paid_port}"
    control = processes(
        "control_plane", "--host", "127.0.0.1", "--port", str(cp_port),
        "--heartbeat-interval", "0.5", "--probe-interval", "0.3",
        "--probe-failure-threshold", "1", "--providers", "local",
        "--local-workdir", str(tmp_path / "instances"), "--local-simulator-args", FAST,
        # the agent's requests/s window: the pool counts as idle 2 s after its last request
        "--local-agent-args", "--metrics-window-s 2",
        "--local-terminate-grace", "5", "--local-prices", "sim-gpu=0.36",
        "--autoscale-interval", "0.5", "--autoscale-interval-at-zero", "0.5",
        "--scale-down-window", "0", "--scale-down-periods", "1", "--drain-timeout", "5",
        "--burst-interval", "0.2",
        env={**env, "ADMIN_TOKEN": ADMIN}, name="control-plane")
    cp_url = f"http://127.0.0.1:{cp_port}"
    await control.wait_http(cp_url + "/healthz", timeout=30)
    router = processes("router", "--host", "127.0.0.1", "--port", str(router_port),
                       "--refresh-period", "0.2", "--report-period", "0.2",
                       env=env, name="router")
    router_url = f"http://127.0.0.1:{router_port}"
    await router.wait_http(router_url + "/readyz", timeout=30)
    await paid.wait_http(paid_url + "/health", timeout=30)

    admin = {"authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=cp_url, headers=admin, timeout=10) as cp:
        reply = await cp.put("/v1/pools/P", json={
            "model_id": MODEL, "provider": "local", "min_replicas": 0, "max_replicas": 1,
            "instance_types": ["sim-gpu"], "scale_to_zero_after_s": 1})
        assert reply.status_code == 201, reply.text
        reply = await cp.put(f"/v1/routes/{MODEL}", json={"targets": [
            {"pool": "P"}, {"upstream": paid_url + "/v1", "model": "paid-model"}]})
        assert reply.status_code in (200, 201), reply.text
        key = (await cp.post("/v1/keys", json={"name": "e2e"})).json()["key"]

        async def paid_requests() -> int:
            async with httpx.AsyncClient(timeout=5) as http:
                return int((await http.get(paid_url + "/admin/stats")).json()["received"])

        async with openai.AsyncOpenAI(base_url=router_url + "/v1", api_key=key,
                                      max_retries=0, timeout=20) as client:
            async def ask() -> tuple[str, str]:
                raw = await client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=MESSAGES)
                return raw.headers["x-flotilla-target"], raw.parse().model

            # 1. the pool is cold: the paid API serves (its model name comes back)
            target, served_model = await wait_for(ask, 20, "the route answers")
            assert (target, served_model) == (f"upstream:127.0.0.1:{paid_port}", "paid-model")
            assert await paid_requests() == 1

            # 2. a burst on P: the pool comes up, traffic moves to it
            reply = await cp.post("/v1/bursts", json={"pool": "P", "replicas": 1,
                                                      "duration_s": 20})
            assert reply.status_code == 201, reply.text
            burst_id = reply.json()["id"]
            pool = (await cp.get("/v1/pools/P")).json()
            assert pool["status"]["floors"] == {burst_id: 1}

            async def burst() -> dict[str, Any]:
                return (await cp.get(f"/v1/bursts/{burst_id}")).json()

            await wait_for(lambda: _state_is(burst, "ready"), 25, "burst ready")
            served_by_pool = await wait_for(
                lambda: _served_by(ask, "pool:P"), 10, "traffic on the pool")
            assert served_by_pool[1] == MODEL
            before = await paid_requests()
            for _ in range(5):
                assert (await ask())[0] == "pool:P"
            assert await paid_requests() == before

            # 3. the duration ends: the floor goes, the idle pool scales to zero and the paid
            #    API serves again
            ended = await wait_for(lambda: _state_is(burst, "completed"), 40, "burst completed")
            assert ended["end_reason"] == "duration"
            kinds = [e["kind"] for e in ended["events"]]
            assert kinds[0] == "burst.created" and "burst.ready" in kinds
            assert kinds[-1] == "burst.completed"
            assert (await cp.get("/v1/pools/P")).json()["status"]["floors"] == {}
            await wait_for(lambda: _pool_ready_is(cp, 0), 30, "pool scaled to zero")
            target, served_model = await wait_for(
                lambda: _served_by(ask, f"upstream:127.0.0.1:{paid_port}"), 15,
                "traffic back on the paid API")
            assert served_model == "paid-model"
            assert await paid_requests() > before

        metrics = (await cp.get("/metrics")).text
        assert (f'flotilla_burst_state{{burst="{burst_id}",pool="P",state="completed"}} 1.0'
                in metrics)


async def _state_is(burst: Callable[[], Any], state: str) -> dict[str, Any] | None:
    shown = await burst()
    assert shown["state"] != "failed", shown
    return shown if shown["state"] == state else None


async def _served_by(ask: Callable[[], Any], target: str) -> tuple[str, str] | None:
    served = await ask()
    return served if served[0] == target else None


async def _pool_ready_is(cp: httpx.AsyncClient, ready: int) -> bool:
    pool = (await cp.get("/v1/pools/P")).json()
    return pool["status"]["ready_replicas"] == ready
