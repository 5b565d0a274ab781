"""Prometheus: /metrics passes promtool, /sd/workers lists every enrolled agent."""

from __future__ import annotations

import asyncio
from typing import Any

from control_plane.api.discovery import target_group
from tests.control_plane.conftest import Running, enroll, eventually, heartbeat, ready_ids
from tests.support.readyz_server import ReadyzServer


async def promtool_check(promtool: str, text: bytes) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate(text)
    return proc.returncode or 0, out.decode()


async def test_metrics_pass_promtool_and_count_what_happened(
        open_control_plane: Any, agent: ReadyzServer, promtool: str) -> None:
    async with open_control_plane() as running:
        worker_id, token = await enroll(running, agent_url=agent.url)
        await heartbeat(running, worker_id, token)
        await eventually(lambda: ready_ids(running), message="ready")
        await running.client.post("/v1/workers/register", json={"instance_id": "i-1"})
        await heartbeat(running, worker_id, "wt-flt-wrong")
        text = (await running.client.get("/metrics")).text
        code, output = await promtool_check(promtool, text.encode())
        assert code == 0, output
        lines = set(text.splitlines())
        for expected in (
            'flotilla_control_plane_registrations_total{result="bootstrapped"} 1.0',
            'flotilla_control_plane_registrations_total{result="invalid"} 1.0',
            'flotilla_control_plane_heartbeats_total{result="ok"} 1.0',
            'flotilla_control_plane_heartbeats_total{result="unauthorized"} 1.0',
            'flotilla_control_plane_workers{ready="true",status="ready"} 1.0',
            'flotilla_control_plane_probes_total{result="passed"} 1.0',
        ):
            assert expected in lines, expected
        for name in ("flotilla_control_plane_heartbeat_lag_seconds_bucket",
                     "flotilla_control_plane_oldest_heartbeat_age_seconds",
                     "flotilla_control_plane_store_reseeds_total",
                     "flotilla_control_plane_store_write_batch_workers_bucket"):
            assert name in text, name


async def test_service_discovery_lists_every_enrolled_agent(running: Running) -> None:
    first, _ = await enroll(running, "i-1", agent_url="http://127.0.0.1:9080")
    second, _ = await enroll(running, "i-2", agent_url="http://[::1]:9081/agent/")
    reply = await running.client.get("/sd/workers")
    assert reply.status_code == 200
    groups = reply.json()
    assert sorted(g["targets"][0] for g in groups) == ["127.0.0.1:9080", "[::1]:9081"]
    assert [g["labels"]["__meta_flotilla_worker_id"] for g in groups] == sorted([first, second])
    by_target = {g["targets"][0]: g["labels"] for g in groups}
    labels = by_target["127.0.0.1:9080"]
    assert labels["__meta_flotilla_worker_id"] == first
    assert labels["model_id"] == labels["__meta_flotilla_model_id"] == "m1"
    assert labels["__meta_flotilla_ready"] == "false"
    assert all(isinstance(v, str) for g in groups for v in g["labels"].values())
    assert by_target["[::1]:9081"]["__metrics_path__"] == "/agent/metrics"


def test_service_discovery_labels_carry_pool_and_instance_type() -> None:
    from fleet.schemas import WorkerRecord

    record = WorkerRecord(worker_id="w", instance_id="i", model_id="m", engine="vllm",
                          url="http://10.0.0.2:8000", agent_url="https://10.0.0.2:8443",
                          registered_at=1.0, last_heartbeat=1.0, provider="aws", pool="p",
                          instance_type="g6.xlarge", zone="z")
    group = target_group(record, True)
    assert group["targets"] == ["10.0.0.2:8443"]
    labels = group["labels"]
    assert (labels["pool"], labels["instance_type"], labels["__meta_flotilla_zone"],
            labels["__scheme__"]) == ("p", "g6.xlarge", "z", "https")
    assert "zone" not in labels


async def test_service_discovery_is_bounded(open_control_plane: Any) -> None:
    async with open_control_plane(sd_max_targets=2) as running:
        for n in range(3):
            await enroll(running, f"i-{n}", agent_url=f"http://127.0.0.1:{9000 + n}")
        assert len((await running.client.get("/sd/workers")).json()) == 2


async def test_health_endpoints(running: Running) -> None:
    assert (await running.client.get("/healthz")).json() == {"status": "ok"}
    ready = await running.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.headers["x-request-id"]
    echoed = await running.client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
