"""Pools and routes in the admin API: validated, stored for routers, reseeded after a flush, and
picked up by a running router without a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from control_plane.app import create_app
from fleet.memory_store import MemoryFleetStore
from fleet.store import POOLS, ROUTES
from router.app import create_app as create_router
from router.settings import RouterSettings
from tests.control_plane.conftest import Running, eventually, make_settings
from tests.support.asgi import asgi_client
from tests.support.ports import free_port

POOL = {"model_id": "org/chat", "engine": "vllm", "provider": "local", "min_replicas": 0,
        "max_replicas": 2, "target_queue_depth": 4, "ttft_p95_slo_ms": 500,
        "scale_to_zero_after_s": 300, "instance_types": [], "max_price_per_hour": None,
        "on_demand_fallback": False}


async def put_pool(running: Running, name: str = "chat", **fields: Any) -> httpx.Response:
    return await running.client.put(f"/v1/pools/{name}", json={**POOL, **fields},
                                    headers=running.admin)


async def test_a_pool_is_created_read_listed_replaced_and_deleted(running: Running) -> None:
    created = await put_pool(running)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "chat" and body["object"] == "pool"
    assert body["model_id"] == "org/chat" and body["max_replicas"] == 2
    assert (await running.store.get_docs(POOLS))["chat"]["model_id"] == "org/chat"

    replaced = await put_pool(running, max_replicas=5)
    assert replaced.status_code == 200 and replaced.json()["max_replicas"] == 5
    got = await running.client.get("/v1/pools/chat", headers=running.admin)
    assert got.json()["max_replicas"] == 5
    listed = (await running.client.get("/v1/pools", headers=running.admin)).json()["data"]
    assert [p["name"] for p in listed] == ["chat"]

    deleted = await running.client.delete("/v1/pools/chat", headers=running.admin)
    assert deleted.json() == {"id": "chat", "object": "pool", "deleted": True,
                              "releasing_instances": 0}
    assert await running.store.get_docs(POOLS) == {}
    assert (await running.client.get("/v1/pools/chat", headers=running.admin)).status_code == 404
    kinds = [e["kind"] for e in (await running.client.get(
        "/v1/events", headers=running.admin)).json()["data"]]
    assert {"pool.created", "pool.updated", "pool.deleted"} <= set(kinds)


@pytest.mark.parametrize("fields,param", [
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas"),
    ({"provider": "gcp"}, "provider"),
    ({"provider": "aws", "instance_types": []}, "instance_types"),
    ({"max_replicas": -1}, "max_replicas"),
    ({"target_queue_depth": "8"}, "target_queue_depth"),
    ({"replicas": 2}, "replicas"),
    ({"model_id": "bad model"}, "model_id"),
])
async def test_a_bad_pool_is_refused_and_changes_nothing(running: Running, fields: dict[str, Any],
                                                         param: str) -> None:
    await put_pool(running, max_replicas=1)
    reply = await put_pool(running, **fields)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert (await running.store.get_docs(POOLS))["chat"]["max_replicas"] == 1


async def test_bad_pool_names_and_bodies_are_refused(running: Running) -> None:
    bad_name = await running.client.put("/v1/pools/-x", json=POOL, headers=running.admin)
    assert bad_name.status_code == 400 and bad_name.json()["error"]["param"] == "name"
    not_json = await running.client.put("/v1/pools/a", content=b"{", headers=running.admin)
    assert not_json.status_code == 400
    missing = await running.client.put("/v1/pools/a", json={}, headers=running.admin)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model_id"
    assert await running.store.get_docs(POOLS) == {}


async def test_routes_are_validated_against_the_pools(running: Running) -> None:
    client, admin = running.client, running.admin
    unknown = await client.put("/v1/routes/org/chat", json={"targets": [{"pool": "chat"}]},
                               headers=admin)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_pool"
    assert unknown.json()["error"]["param"] == "targets[0].pool"
    assert await running.store.get_docs(ROUTES) == {}

    await put_pool(running)
    body = {"targets": [{"pool": "chat"}, {"upstream": "https://api.openai.com/v1",
                                            "api_key_env": "OPENAI_API_KEY",
                                            "model": "gpt-4o-mini"}]}
    created = await client.put("/v1/routes/org/chat", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["model"] == "org/chat"
    assert created.json()["targets"][1]["api_key_env"] == "OPENAI_API_KEY"
    stored = (await running.store.get_docs(ROUTES))["org/chat"]
    assert stored["targets"][0] == {"pool": "chat"}
    assert (await client.get("/v1/routes/org/chat", headers=admin)).json()["targets"][0] == \
        {"pool": "chat"}
    assert [r["model"] for r in (await client.get("/v1/routes", headers=admin)).json()["data"]] \
        == ["org/chat"]

    # A pool a route names cannot go; the route first.
    in_use = await client.delete("/v1/pools/chat", headers=admin)
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "pool_in_use"
    assert "chat" in await running.store.get_docs(POOLS)
    assert (await client.delete("/v1/routes/org/chat", headers=admin)).json()["deleted"]
    assert (await client.delete("/v1/routes/org/chat", headers=admin)).status_code == 404
    assert (await client.delete("/v1/pools/chat", headers=admin)).status_code == 200


async def test_routing_options_round_trip_and_an_auto_side_keeps_its_pool(
        running: Running) -> None:
    client, admin = running.client, running.admin
    await put_pool(running, name="small")
    await put_pool(running, name="large")
    body = {"targets": [{"auto": {"small": "small", "large": "large", "threshold": 0.5}}],
            "stream_resume": False, "cache": {"ttl_s": 60, "shared": True}}
    created = await client.put("/v1/routes/org/chat", json=body, headers=admin)
    assert created.status_code == 201, created.text
    stored = (await running.store.get_docs(ROUTES))["org/chat"]
    assert stored["targets"][0]["auto"] == {"small": "small", "large": "large", "threshold": 0.5}
    assert stored["stream_resume"] is False and stored["cache"]["ttl_s"] == 60
    # The auto target names the pool: it cannot be deleted under the route.
    in_use = await client.delete("/v1/pools/large", headers=admin)
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "pool_in_use"
    same = {"targets": [{"auto": {"small": "small", "large": "small"}}]}
    refused = await client.put("/v1/routes/other", json=same, headers=admin)
    assert refused.status_code == 400 and "other" not in await running.store.get_docs(ROUTES)


@pytest.mark.parametrize("body,param", [
    ({"targets": []}, "targets"),
    ({"targets": [{"pool": "chat", "upstream": "https://x/v1"}]}, "targets[0]"),
    ({"targets": [{"upstream": "ftp://x/v1"}]}, "targets[0].upstream"),
    ({"targets": [{"upstream": "https://x/v1", "api_key": "sk-secret"}]}, "targets[0].api_key"),
    ({"targets": [{"upstream": "https://x/v1", "api_key_env": "1BAD"}]},
     "targets[0].api_key_env"),
    ({"targets": "chat"}, "targets"),
])
async def test_a_bad_route_is_refused_and_changes_nothing(running: Running, body: dict[str, Any],
                                                          param: str) -> None:
    await put_pool(running)
    reply = await running.client.put("/v1/routes/m", json=body, headers=running.admin)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
    assert "sk-secret" not in reply.text
    assert await running.store.get_docs(ROUTES) == {}


async def test_pool_and_route_changes_notify_routers(running: Running) -> None:
    async with running.store.subscribe() as subscription:
        topics = subscription.__aiter__()
        await asyncio.sleep(0.05)
        await put_pool(running)
        assert await asyncio.wait_for(topics.__anext__(), 5) == "pools"
        await running.client.put("/v1/routes/m", json={"targets": [{"pool": "chat"}]},
                                 headers=running.admin)
        assert await asyncio.wait_for(topics.__anext__(), 5) == "routes"


async def test_pools_and_routes_come_back_after_a_flush_and_a_restart(
        open_control_plane: Any) -> None:
    async with open_control_plane() as running:
        await put_pool(running)
        await running.client.put("/v1/routes/m", json={"targets": [{"pool": "chat"}]},
                                 headers=running.admin)
        redis = running.store._redis  # noqa: SLF001 - the test flushes the real Redis
        await redis.flushdb()
        await eventually(lambda: running.store.get_docs(ROUTES), message="routes reseeded")
        assert "chat" in await running.store.get_docs(POOLS)
    async with open_control_plane() as again:
        listed = (await again.client.get("/v1/routes", headers=again.admin)).json()["data"]
        assert listed[0]["targets"] == [{"pool": "chat"}]
        assert (await again.client.get("/v1/pools/chat", headers=again.admin)).status_code == 200


async def test_pools_and_routes_work_on_the_embedded_store() -> None:
    store = MemoryFleetStore()
    app = create_app(make_settings(), store=store)
    admin = {"authorization": f"Bearer {make_settings().admin_token}"}
    async with asgi_client(app) as client:
        assert (await client.put("/v1/pools/p", json=POOL, headers=admin)).status_code == 201
        assert (await client.put("/v1/routes/m", json={"targets": [{"pool": "p"}]},
                                 headers=admin)).status_code == 201
        assert (await store.get_docs(ROUTES))["m"]["targets"] == [{"pool": "p"}]


@contextlib.asynccontextmanager
async def running_router(store: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = RouterSettings(redis_url=None, refresh_period_s=30.0, report_period_s=0.1,
                              cold_start_wait_s=0.1, backoff_base_s=0.01, backoff_max_s=0.05)
    async with asgi_client(create_router(settings, store=store), "http://router") as client:
        yield client


async def test_a_running_router_picks_up_a_new_route_without_a_restart(
        running: Running, processes: Any) -> None:
    port = free_port()
    sim = processes("simulator", "--host", "127.0.0.1", "--port", str(port), "--model",
                    "sim/upstream", "--ttft-ms", "0", "--itl-ms", "0", name="sim")
    await sim.wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
    key = (await running.client.post("/v1/keys", json={"name": "t"},
                                     headers=running.admin)).json()["key"]
    async with running_router(running.store) as router:
        sdk = openai.AsyncOpenAI(base_url="http://router/v1", api_key=key, max_retries=0,
                                 http_client=router)
        with pytest.raises(openai.NotFoundError):
            await sdk.chat.completions.create(model="alias", messages=[
                {"role": "user", "content": "hi"}])
        reply = await running.client.put(
            "/v1/routes/alias", json={"targets": [{"upstream": f"http://127.0.0.1:{port}/v1",
                                                   "model": "sim/upstream"}]},
            headers=running.admin)
        assert reply.status_code == 201, reply.text

        async def served() -> bool:
            try:
                raw = await sdk.chat.completions.with_raw_response.create(
                    model="alias", messages=[{"role": "user", "content": "hi"}])
            except openai.NotFoundError:
                return False
            assert raw.headers["x-flotilla-target"] == f"upstream:127.0.0.1:{port}"
            return raw.parse().model == "sim/upstream"

        # The router's periodic refresh is 30 s: only the notification brings it within 15 s.
        await eventually(served, timeout=15, message="the router serving the new route")
