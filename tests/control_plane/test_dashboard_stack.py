"""The dashboard over a whole stack: the local provider's real agent + simulator, a real router
sending real requests (its breakers reported through the store), the cost of a priced instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.control_plane.conftest import eventually
from tests.control_plane.dashboard_support import (
    Stack,
    browser_session,
    serve_stack,
    sign_in,
    wait_refreshed,
)

MODEL = "sim/chat-small"


@pytest.fixture
async def stack(redis_server: Any, key_prefix: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with serve_stack(str(redis_server.url), key_prefix, tmp_path) as value:
        yield value


async def test_a_live_pool_with_its_worker_cost_and_router_circuits(stack: Stack,
                                                                    tmp_path: Path) -> None:
    pool = {"model_id": MODEL, "engine": "vllm", "provider": "local", "min_replicas": 1,
            "max_replicas": 2, "instance_types": ["sim-gpu"], "ttft_p95_slo_ms": 800}
    assert (await stack.admin.put("/v1/pools/chat", json=pool)).status_code == 201
    route = await stack.admin.put(f"/v1/routes/{MODEL}", json={"targets": [{"pool": "chat"}]})
    assert route.status_code in (200, 201), route.text

    async def ready_worker() -> dict[str, Any] | None:
        workers = (await stack.admin.get("/v1/workers")).json()["data"]
        return workers[0] if workers and workers[0]["ready"] else None

    worker = await eventually(ready_worker, timeout=60, message="the pool's first worker")
    key = (await stack.admin.post("/v1/keys", json={"name": "dash"})).json()["key"]
    async with httpx.AsyncClient(base_url=stack.router_url, timeout=30,
                                 headers={"authorization": f"Bearer {key}"}) as client:
        for i in range(3):
            reply = await client.post("/v1/chat/completions", json={
                "model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": str(i)}]})
            assert reply.status_code == 200, reply.text

    async def reported() -> dict[str, str] | None:
        one = (await stack.admin.get(f"/v1/workers/{worker['worker_id']}")).json()
        return one["circuits"] or None

    circuits = await eventually(reported, message="the router's breaker state")
    assert list(circuits.values()) == ["healthy"]
    cost = (await stack.admin.get("/v1/cost")).json()
    assert cost["per_hour_usd"] == pytest.approx(0.45)

    async with browser_session(tmp_path) as browser:
        await sign_in(browser, stack.url)
        await wait_refreshed(browser)
        pool_row = await browser.text(await browser.find("#pools-table tr[data-pool='chat']"))
        assert MODEL in pool_row and "1 / 1" in pool_row and "$0.450" in pool_row
        worker_row = await browser.text(
            await browser.find(f"tr[data-worker-id='{worker['worker_id']}']"))
        (router_id,) = circuits
        assert f"{router_id}: healthy" in worker_row and "sim-gpu" in worker_row
        assert await browser.text(await browser.find("#cost-per-hour")) == "$0.450"
