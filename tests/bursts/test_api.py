"""The bursts and estimate admin API over a real Redis: shapes, validation that changes nothing,
a restart that resumes a running burst, a flush that is reseeded, metrics through promtool."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from fleet.store import BURSTS
from tests.control_plane.conftest import Running, eventually

POOL = {"model_id": "m1", "provider": "local", "min_replicas": 0, "max_replicas": 3,
        "instance_types": ["sim-gpu"]}


async def put_pool(running: Running, name: str = "p", **fields: Any) -> None:
    reply = await running.client.put(f"/v1/pools/{name}", json={**POOL, **fields},
                                     headers=running.admin)
    assert reply.status_code in (200, 201), reply.text


async def start_burst(running: Running, **fields: Any) -> dict[str, Any]:
    body = {"pool": "p", "replicas": 2, "duration_s": 600, **fields}
    reply = await running.client.post("/v1/bursts", json=body, headers=running.admin)
    assert reply.status_code == 201, reply.text
    return reply.json()


async def test_a_burst_is_created_listed_shown_and_cancelled(running: Running) -> None:
    await put_pool(running)
    burst = await start_burst(running, budget_usd=2.5)
    assert burst["state"] == "requesting_spot" and burst["id"].startswith("burst_")
    assert (burst["pool"], burst["replicas"], burst["budget_usd"]) == ("p", 2, 2.5)
    assert burst["deadline"] == pytest.approx(burst["started_at"] + 600)
    assert burst["cost_usd"] == 0 and burst["events"][0]["kind"] == "burst.created"
    assert running.cp.capacity.pool_view("p").floors == {burst["id"]: 2}

    listed = (await running.client.get("/v1/bursts", headers=running.admin)).json()
    assert [b["id"] for b in listed["data"]] == [burst["id"]]
    shown = (await running.client.get(f"/v1/bursts/{burst['id']}",
                                      headers=running.admin)).json()
    assert shown["id"] == burst["id"] and "progress" in shown and "ready_replicas" in shown

    cancelled = await running.client.post(f"/v1/bursts/{burst['id']}/cancel",
                                          headers=running.admin)
    assert cancelled.status_code == 200
    assert (cancelled.json()["state"], cancelled.json()["end_reason"]) == ("completed",
                                                                           "cancelled")
    assert running.cp.capacity.pool_view("p").floors == {}
    active = (await running.client.get("/v1/bursts?active=true",
                                       headers=running.admin)).json()
    assert active["data"] == []
    doc = await running.store.get_doc(BURSTS, burst["id"])
    assert doc is not None and doc["state"] == "completed"
    events = (await running.client.get("/v1/events", headers=running.admin)).json()["data"]
    assert {e["kind"] for e in events if e["subject"] == burst["id"]} >= {
        "burst.created", "burst.completed"}


@pytest.mark.parametrize("body, status, param", [
    ({}, 400, "pool"),
    ({"pool": "p", "replicas": 2, "duration_s": 60, "colour": "red"}, 400, "colour"),
    ({"pool": "p", "replicas": 0, "duration_s": 60}, 400, "replicas"),
    ({"pool": "p", "replicas": "2", "duration_s": 60}, 400, "replicas"),
    ({"pool": "p", "duration_s": -5}, 400, "duration_s"),
    ({"pool": "p", "duration_s": 60, "budget_usd": 0}, 400, "budget_usd"),
    ({"pool": "bad name!", "duration_s": 60}, 400, "pool"),
    ({"pool": "p", "replicas": 2}, 422, "duration_s"),
    ({"pool": "p", "replicas": 4, "duration_s": 60}, 422, "replicas"),
    ({"pool": "nope", "duration_s": 60}, 404, "pool"),
    ([1, 2], 400, None),
])
async def test_bad_burst_requests_are_refused_and_change_nothing(
        running: Running, body: Any, status: int, param: str | None) -> None:
    await put_pool(running)
    reply = await running.client.post("/v1/bursts", json=body, headers=running.admin)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["message"]
    assert await running.store.get_docs(BURSTS) == {}
    assert running.cp.capacity.pool_view("p").floors == {}


async def test_malformed_json_unknown_ids_and_missing_auth(running: Running) -> None:
    reply = await running.client.post("/v1/bursts", content=b"{nope",
                                      headers={**running.admin,
                                               "content-type": "application/json"})
    assert reply.status_code == 400 and "JSON" in reply.json()["error"]["message"]
    for method, path in (("GET", "/v1/bursts/burst_0"), ("POST", "/v1/bursts/burst_0/cancel")):
        reply = await running.client.request(method, path, headers=running.admin)
        assert reply.status_code == 404, path
    assert (await running.client.get("/v1/bursts")).status_code == 401
    assert (await running.client.post("/v1/estimate", json={"tokens": 1})).status_code == 401


async def test_one_running_burst_per_pool(running: Running) -> None:
    await put_pool(running)
    first = await start_burst(running)
    reply = await running.client.post("/v1/bursts", json={"pool": "p", "duration_s": 60},
                                      headers=running.admin)
    assert reply.status_code == 409
    assert first["id"] in reply.json()["error"]["message"]
    assert list(await running.store.get_docs(BURSTS)) == [first["id"]]


async def test_a_restarted_control_plane_resumes_the_running_burst(
        open_control_plane: Any) -> None:
    async with open_control_plane() as running:
        await put_pool(running)
        burst = await start_burst(running, duration_s=3600)
    async with open_control_plane() as restarted:
        shown = (await restarted.client.get(f"/v1/bursts/{burst['id']}",
                                            headers=restarted.admin)).json()
        assert shown["state"] == "requesting_spot" and shown["created_at"] == burst["created_at"]
        # the new process holds the floor again and keeps observing the pool
        assert restarted.cp.capacity.pool_view("p").floors == {burst["id"]: 2}
        cancelled = await restarted.client.post(f"/v1/bursts/{burst['id']}/cancel",
                                                headers=restarted.admin)
        assert cancelled.json()["state"] == "completed"


async def test_a_flushed_store_gets_the_bursts_back(open_control_plane: Any,
                                                    redis_factory: Any) -> None:
    server = redis_factory()
    async with open_control_plane(server.url) as running:
        await put_pool(running)
        burst = await start_burst(running)
        client = aioredis.Redis.from_url(server.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()
        doc = await eventually(lambda: running.store.get_doc(BURSTS, burst["id"]),
                               message="burst reseeded")
        assert doc["pool"] == "p"


async def test_burst_metrics_pass_promtool(running: Running, promtool: str) -> None:
    await put_pool(running)
    burst = await start_burst(running)
    text = (await running.client.get("/metrics")).text
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()
    lines = set(text.splitlines())
    assert (f'flotilla_burst_state{{burst="{burst["id"]}",pool="p",state="requesting_spot"}} 1.0'
            in lines)
    assert f'flotilla_burst_state{{burst="{burst["id"]}",pool="p",state="ready"}} 0.0' in lines
    assert f'flotilla_burst_cost_usd{{burst="{burst["id"]}"}} 0.0' in lines


async def test_estimate_compares_configured_types_with_the_upstream_price(
        open_control_plane: Any, tmp_path: Path) -> None:
    table = tmp_path / "estimate.json"
    table.write_bytes(orjson.dumps({
        "throughput": [{"instance_type": "sim-gpu", "model_id": "m1",
                        "output_tokens_per_s": 100, "startup_s": 0}],
        "prices": {"sim-gpu": 0.36}}))
    async with open_control_plane(estimate_table=str(table)) as running:
        await put_pool(running, instance_types=["sim-gpu", "sim-big"])
        reply = await running.client.post("/v1/estimate", headers=running.admin, json={
            "tokens": 0, "output_tokens": 360_000, "pool": "p",
            "upstream_price_per_mtok": 10.0, "upstream": "paid-api"})
        assert reply.status_code == 200, reply.text
        result = reply.json()
        by_type = {o["instance_type"]: o for o in result["options"]}
        assert by_type["sim-gpu"]["seconds"] == pytest.approx(3600.0)
        assert by_type["sim-gpu"]["cost_usd"] == pytest.approx(0.36)
        assert by_type["sim-big"]["cost_usd"] is None
        assert by_type["sim-big"]["throughput"] is None
        assert result["upstream"]["cost_usd"] == pytest.approx(3.6)
        assert result["cheapest"] == "sim-gpu" and result["model_id"] == "m1"
        for body, status, param in (({"tokens": 1, "pool": "nope"}, 404, "pool"),
                                    ({"tokens": -1}, 400, "tokens"),
                                    ({"output_tokens": 1}, 400, "tokens")):
            reply = await running.client.post("/v1/estimate", json=body, headers=running.admin)
            assert reply.status_code == status
            assert reply.json()["error"]["param"] == param
