"""A whole stack in one event loop, as `flotilla up` runs it: control plane + router (+ a fake
metadata service) served by uvicorn on loopback ports, the local provider starting real agent +
simulator processes, a real Redis, short intervals."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.app import create_app as create_control_plane
from control_plane.services import ControlPlane
from control_plane.settings import ControlPlaneSettings
from fleet.redis_store import RedisFleetStore
from fleet.serving import Listener, serve_apps
from router.app import create_app as create_router
from router.settings import RouterSettings
from tests.support.fake_imds import FakeImdsFleet
from tests.support.ports import free_port
from tests.support.waiting import eventually

ADMIN_TOKEN = "admin-token-for-capacity-e2e"
FAST_AGENT = ("--engine-poll-interval-s 0.1 --drain-settle-s 0 --drain-timeout-s 10 "
              "--engine-stop-grace-s 5 --backoff-max-s 0.5 --imds-poll-interval-s 0.2 "
              "--heartbeat-interval-s 0.3 --metrics-window-s 1")


@dataclasses.dataclass
class Stack:
    cp: ControlPlane
    control_plane_url: str
    router_url: str
    imds: FakeImdsFleet
    admin: httpx.AsyncClient

    async def key(self) -> str:
        reply = await self.admin.post("/v1/keys", json={"name": "e2e"})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["key"])

    async def put_pool(self, name: str, **fields: Any) -> dict[str, Any]:
        reply = await self.admin.put(f"/v1/pools/{name}", json=fields)
        assert reply.status_code in (200, 201), reply.text
        return dict(reply.json())

    async def status(self, name: str) -> dict[str, Any]:
        return dict((await self.admin.get(f"/v1/pools/{name}")).json()["status"])

    async def events(self, kind: str) -> list[dict[str, Any]]:
        data = (await self.admin.get("/v1/events?limit=1000")).json()["data"]
        return [e for e in data if e["kind"] == kind]


@pytest.fixture
async def capacity_stack(redis_server: Any, key_prefix: str, tmp_path: Path
                         ) -> AsyncIterator[Callable[..., Any]]:
    @contextlib.asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[Stack]:
        cp_port, router_port, imds_port = free_port(), free_port(), free_port()
        values: dict[str, Any] = dict(
            host="127.0.0.1", port=cp_port, admin_token=ADMIN_TOKEN, heartbeat_interval_s=0.3,
            probe_interval_s=0.3, probe_failure_threshold=1, autoscale_interval_s=0.3,
            autoscale_interval_at_zero_s=0.2, scale_down_window_s=1.0, scale_down_periods=2,
            drain_timeout_s=10.0, cold_demand_window_s=1.0, reconcile_interval_s=1.0,
            reconcile_grace_s=5.0,
            local_workdir=str(tmp_path / "instances"), local_boot_delay_s=0.3,
            local_agent_args=FAST_AGENT, local_simulator_args="--load-s 0",
            local_terminate_grace_s=10.0,
            local_imds_url=f"http://127.0.0.1:{imds_port}/{{instance_id}}",
            log_level="info")
        values.update(overrides)
        settings = ControlPlaneSettings(**values)
        store = RedisFleetStore(redis_server.url, prefix=key_prefix)
        router_settings = RouterSettings(
            host="127.0.0.1", port=router_port, redis_url=None, report_period_s=0.1,
            refresh_period_s=0.5, store_timeout_s=1.0, cold_start_wait_s=30.0,
            backoff_base_s=0.01, backoff_max_s=0.05)
        cp_app = create_control_plane(settings, store=store)
        imds = FakeImdsFleet()
        stop = asyncio.Event()
        serving = asyncio.create_task(serve_apps(
            [Listener(cp_app, "127.0.0.1", cp_port, "control-plane"),
             Listener(create_router(router_settings, store=store), "127.0.0.1", router_port,
                      "router"),
             Listener(imds, "127.0.0.1", imds_port, "imds")],
            stop=stop, handle_signals=False, timeout_graceful_shutdown=5))
        cp_url = f"http://127.0.0.1:{cp_port}"
        try:
            async with httpx.AsyncClient(base_url=cp_url, timeout=10, headers={
                    "authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
                await eventually(lambda: getattr(cp_app.state, "cp", None) is not None
                            or serving.done(), timeout=30, message="control plane started")
                assert not serving.done(), serving
                yield Stack(cp_app.state.cp, cp_url, f"http://127.0.0.1:{router_port}", imds,
                            admin)
        finally:
            stop.set()
            await asyncio.wait_for(serving, 60)
            await store.aclose()

    yield opened
