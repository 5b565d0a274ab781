"""Breaker states the routers report, shown per worker by the admin API."""

from __future__ import annotations

from typing import Any

from control_plane.circuits import REPORT_STALE_S, circuits_by_worker
from fleet.schemas import RouterReport
from fleet.store import ROUTERS
from tests.control_plane.conftest import Running, enroll


def test_states_are_grouped_by_worker_then_router() -> None:
    docs: dict[str, dict[str, Any]] = {
        "r1": {"ts": 100.0, "circuits": {"w1": "healthy", "w2": "circuit_open"}},
        "r2": {"ts": 100.0, "circuits": {"w1": "degraded"}},
    }
    assert circuits_by_worker(docs, now=101.0) == {
        "w1": {"r1": "healthy", "r2": "degraded"}, "w2": {"r1": "circuit_open"}}


def test_stale_and_malformed_reports_are_left_out() -> None:
    docs: dict[str, Any] = {
        "dead": {"ts": 100.0, "circuits": {"w1": "circuit_open"}},
        "no-ts": {"circuits": {"w1": "circuit_open"}},
        "odd": {"ts": 200.0, "circuits": ["w1"]},
        "bad-state": {"ts": 200.0, "circuits": {"w1": 3}},
        "live": {"ts": 200.0, "circuits": {"w1": "healthy"}},
        "junk": "not a report",
    }
    assert circuits_by_worker(docs, now=100.0 + REPORT_STALE_S + 1) == {"w1": {"live": "healthy"}}


async def test_workers_carry_the_routers_breaker_states(running: Running) -> None:
    worker_id, _ = await enroll(running, "i-1")
    other_id, _ = await enroll(running, "i-2", agent_url="http://127.0.0.1:9081")
    now = running.cp.clock()
    await running.store.put_doc(ROUTERS, "router-a", RouterReport(
        router_id="router-a", ts=now, started_at=now, circuits={worker_id: "circuit_open"}))

    listed = (await running.client.get("/v1/workers", headers=running.admin)).json()["data"]
    circuits = {w["worker_id"]: w["circuits"] for w in listed}
    assert circuits == {worker_id: {"router-a": "circuit_open"}, other_id: {}}
    one = (await running.client.get(f"/v1/workers/{worker_id}", headers=running.admin)).json()
    assert one["circuits"] == {"router-a": "circuit_open"}
