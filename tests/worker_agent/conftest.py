"""Fixtures for the agent's end-to-end tests: real control plane, simulator and agent processes on
loopback, a real redis-server, and the fake IMDS (the one part that cannot exist here).

Intervals are short (heartbeats every 0.3 s, probes every 0.2 s) so the whole folder stays fast;
waits are generous because the machine is shared (never timing assertions on speed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet.schemas import WorkerRecord
from fleet.store import FleetStore, open_store
from tests.support.fake_imds import FakeImds
from tests.support.http_server import serve_http
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

ADMIN_TOKEN = "admin-token-for-agent-tests"
HEARTBEAT_S = 0.3


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0,
                     interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `check()` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = await check()
        except (httpx.HTTPError, KeyError, IndexError) as exc:
            last = exc  # not up yet, or not the shape expected yet: keep polling
        else:
            if result:
                return result
            last = result
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last!r})")


@dataclass
class Service:
    proc: ManagedProcess
    url: str
    port: int
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class Stack:
    """Starts the real services of one test; the `processes` fixture stops them all."""

    def __init__(self, processes: Callable[..., ManagedProcess], tmp_path: Path) -> None:
        self._start = processes
        self.tmp_path = tmp_path
        self.http = httpx.AsyncClient(timeout=5.0, trust_env=False)
        self._stores: list[FleetStore] = []

    def control_plane(self, redis_url: str, prefix: str, *, port: int | None = None,
                      heartbeat_s: float = HEARTBEAT_S, **env: str) -> Service:
        port = port or free_port()
        args = ["--host", "127.0.0.1", "--port", str(port), "--heartbeat-interval",
                str(heartbeat_s), "--probe-interval", "0.2", "--probe-failure-threshold", "1",
                "--store-check-interval", "0.1"]
        environment = {"REDIS_URL": redis_url, "STORE_PREFIX": prefix,
                       "ADMIN_TOKEN": ADMIN_TOKEN, **env}
        proc = self._start("control_plane", *args, env=environment, name="control-plane")
        return Service(proc, f"http://127.0.0.1:{port}", port, args, environment)

    def restart(self, service: Service) -> Service:
        """Stop a service and start it again with the same port, flags and environment."""
        service.proc.stop()
        module = service.proc.module
        proc = self._start(module, *service.args, env=service.env, name=service.proc.name)
        return Service(proc, service.url, service.port, service.args, service.env)

    def sim(self, *extra: str, kind: str = "vllm", model: str = "org/model",
            port: int | None = None) -> Service:
        port = port or free_port()
        args = ["--kind", kind, "--host", "127.0.0.1", "--port", str(port), "--model", model,
                *extra]
        proc = self._start("simulator", *args, name=f"sim-{kind}")
        return Service(proc, f"http://127.0.0.1:{port}", port, args)

    def agent(self, *, model: str = "org/model", engine_url: str, control_plane: str | None,
              instance_id: str = "inst-1", port: int | None = None, extra: tuple[str, ...] = (),
              **env: str) -> Service:
        port = port or free_port()
        args = ["--host", "127.0.0.1", "--port", str(port), *extra]
        environment = {
            "MODEL_ID": model, "INSTANCE_ID": instance_id, "ENGINE_URL": engine_url,
            "CONTROL_PLANE_URL": control_plane or "", "HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
            "IMDS_URL": "", "ENGINE_POLL_INTERVAL_S": "0.1", "ENGINE_TIMEOUT_S": "5",
            "CONTROL_PLANE_TIMEOUT_S": "5", "CONTROL_PLANE_BACKOFF_MAX_S": "0.5",
            "DRAIN_SETTLE_S": "0.3", "DRAIN_TIMEOUT_S": "20", "ENGINE_STOP_GRACE_S": "5",
            "ENGINE_RESTART_BACKOFF_S": "0.2", "LOG_LEVEL": "debug", **env,
        }
        proc = self._start("worker_agent", *args, env=environment, name="agent")
        return Service(proc, f"http://127.0.0.1:{port}", port, args, environment)

    # -- what the control plane published (the fleet store the routers read) -----------------

    def store(self, redis_url: str, prefix: str) -> FleetStore:
        store = open_store(redis_url, prefix=prefix)
        self._stores.append(store)
        return store

    async def readyz(self, agent: Service) -> httpx.Response:
        return await self.http.get(agent.url + "/readyz")

    async def metric(self, agent: Service, line_prefix: str) -> float | None:
        """The value of the first sample of the agent's /metrics starting with `line_prefix`."""
        text = (await self.http.get(agent.url + "/metrics")).text
        for line in text.splitlines():
            if line.startswith(line_prefix):
                return float(line.rsplit(" ", 1)[1])
        return None

    async def aclose(self) -> None:
        await self.http.aclose()
        for store in self._stores:
            await store.aclose()


async def worker_of(store: FleetStore, instance_id: str = "inst-1") -> WorkerRecord | None:
    for record in await store.list_workers():
        if record.instance_id == instance_id:
            return record
    return None


async def is_ready(store: FleetStore, worker_id: str, model: str = "org/model") -> bool:
    return any(r.worker_id == worker_id for r in (await store.ready_workers()).get(model, []))


@pytest.fixture
async def stack(processes, tmp_path: Path) -> AsyncIterator[Stack]:
    s = Stack(processes, tmp_path)
    yield s
    await s.aclose()


@pytest.fixture
async def fake_imds() -> AsyncIterator[tuple[FakeImds, str]]:
    fake = FakeImds()
    async with serve_http(fake.app) as url:
        yield fake, url
