"""The whole stack of one chaos scenario, as real processes on loopback.

A private redis-server (each scenario may restart or flush its own), the control plane, 3-4
workers (a simulator and its agent each, enrolled through the control plane, probed by it), and
one or more router processes sharing the store. Periods are short (heartbeats 0.3 s, probes
0.2 s, router refresh 0.2 s) so a fault shows within a second or two; the router's timeouts are
short too (first byte and stream idle 3 s) so that a worker that goes silent costs seconds, not
the production defaults' minutes. Every wait is a poll with a bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.load import MODEL
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess
from tests.support.redis_server import RedisServer

ADMIN_TOKEN = "admin-token-for-chaos-tests"
PREFIX = "flotilla-chaos"
# The engine's pace: 40 tokens at 10 ms after a 20 ms first token, ~0.45 s per answer, so that
# every fault lands on requests in flight.
SIM_PACE = ("--ttft-ms", "20", "--itl-ms", "10", "--output-tokens", "40")
ROUTER_TIMEOUTS = ("--connect-timeout", "1", "--first-byte-timeout", "3", "--idle-timeout", "3")


@dataclass
class Worker:
    index: int
    sim: ManagedProcess
    sim_port: int
    agent: ManagedProcess
    agent_port: int
    advertise_url: str

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def agent_url(self) -> str:
        return f"http://127.0.0.1:{self.agent_port}"


@dataclass
class Router:
    proc: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class ChaosStack:
    start: Callable[..., ManagedProcess]
    redis: RedisServer
    control_plane_port: int = field(default_factory=free_port)
    control_plane_proc: ManagedProcess | None = None
    workers: list[Worker] = field(default_factory=list)
    routers: list[Router] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(timeout=5, trust_env=False)

    @property
    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis.url, "STORE_PREFIX": PREFIX}

    @property
    def control_plane_url(self) -> str:
        return f"http://127.0.0.1:{self.control_plane_port}"

    # -- starting ---------------------------------------------------------------------------------

    def start_control_plane(self) -> ManagedProcess:
        self.control_plane_proc = self.start(
            "control_plane", "--host", "127.0.0.1", "--port", str(self.control_plane_port),
            "--heartbeat-interval", "0.3", "--probe-interval", "0.2",
            "--probe-failure-threshold", "1", "--store-check-interval", "0.2",
            env={**self.env, "ADMIN_TOKEN": ADMIN_TOKEN}, name="control-plane")
        return self.control_plane_proc

    def start_worker(self, *, imds_url: str = "", advertise: Callable[[int], str] | None = None,
                     **agent_env: str) -> Worker:
        index = len(self.workers)
        sim_port, agent_port = free_port(), free_port()
        sim = self.start("simulator", "--host", "127.0.0.1", "--port", str(sim_port),
                         "--model", MODEL, "--seed", str(index), *SIM_PACE, name=f"sim-{index}")
        sim_url = f"http://127.0.0.1:{sim_port}"
        advertise_url = advertise(sim_port) if advertise is not None else sim_url
        agent = self.start("worker_agent", "--host", "127.0.0.1", "--port", str(agent_port),
                           env={"MODEL_ID": MODEL, "INSTANCE_ID": f"chaos-{index}",
                                "ENGINE_URL": sim_url, "ADVERTISE_URL": advertise_url,
                                "AGENT_URL": f"http://127.0.0.1:{agent_port}",
                                "CONTROL_PLANE_URL": self.control_plane_url,
                                "HEARTBEAT_INTERVAL_S": "0.3", "IMDS_URL": imds_url,
                                "IMDS_POLL_INTERVAL_S": "0.2", "ENGINE_POLL_INTERVAL_S": "0.1",
                                "CONTROL_PLANE_BACKOFF_MAX_S": "0.5",
                                "CONTROL_PLANE_TIMEOUT_S": "2", "DRAIN_SETTLE_S": "1",
                                "DRAIN_DEADLINE_MARGIN_S": "1", "DRAIN_TIMEOUT_S": "20",
                                **agent_env},
                           name=f"agent-{index}")
        worker = Worker(index, sim, sim_port, agent, agent_port, advertise_url)
        self.workers.append(worker)
        return worker

    def start_router(self) -> Router:
        port = free_port()
        proc = self.start("router", "--host", "127.0.0.1", "--port", str(port),
                          "--refresh-period", "0.2", "--report-period", "0.1",
                          "--backoff-base", "0.01", "--backoff-max", "0.05",
                          "--store-timeout", "0.5", *ROUTER_TIMEOUTS,
                          env=self.env, name=f"router-{len(self.routers)}")
        router = Router(proc, port)
        self.routers.append(router)
        return router

    async def up(self, *, workers: int = 4, routers: int = 1,
                 worker_options: list[dict[str, Any]] | None = None) -> str:
        """Start everything, wait until every router sees every worker; return an API key."""
        self.start_control_plane()
        options = worker_options or [{} for _ in range(workers)]
        for option in options:
            self.start_worker(**option)
        for _ in range(routers):
            self.start_router()
        assert self.control_plane_proc is not None
        await self.control_plane_proc.wait_http(self.control_plane_url + "/healthz", timeout=60)
        await asyncio.gather(*[w.sim.wait_http(w.sim_url + "/health", timeout=60)
                               for w in self.workers],
                             *[r.proc.wait_http(r.url + "/healthz", timeout=60)
                               for r in self.routers])
        key = await self.create_key()
        await asyncio.gather(*[self.wait_router_workers(r, len(self.workers), timeout=60)
                               for r in self.routers])
        return key

    async def create_key(self) -> str:
        response = await self.http.post(self.control_plane_url + "/v1/keys",
                                        json={"name": "chaos", "models": None, "rpm": None,
                                              "tpm": None},
                                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 201, response.text
        return response.json()["key"]

    # -- looking ----------------------------------------------------------------------------------

    async def router_readyz(self, router: Router) -> dict[str, Any]:
        return (await self.http.get(router.url + "/readyz")).json()

    async def wait_router_workers(self, router: Router, count: int,
                                  timeout: float = 20.0) -> float:
        """Poll until `router` holds `count` ready workers; return the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = await self.router_readyz(router)
                if last["workers"] == count:
                    return time.monotonic() - started
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last = exc
            await asyncio.sleep(0.05)
        raise AssertionError(f"{router.url} never held {count} workers (last: {last!r})")

    async def router_counters(self, router: Router, *names: str) -> dict[str, float]:
        """The router's Prometheus samples of the named metrics, `name{labels}` -> value."""
        text = (await self.http.get(router.url + "/metrics")).text
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(names) and not line.startswith("#"):
                sample, value = line.rsplit(" ", 1)
                if float(value):
                    found[sample] = float(value)
        return found

    async def sim_stats(self, worker: Worker) -> dict[str, int]:
        return (await self.http.get(worker.sim_url + "/admin/stats")).json()

    async def put_faults(self, worker: Worker, **faults: Any) -> None:
        response = await self.http.put(worker.sim_url + "/admin/faults", json=faults)
        response.raise_for_status()

    async def admin_workers(self) -> list[dict[str, Any]]:
        response = await self.http.get(self.control_plane_url + "/v1/workers",
                                       headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        response.raise_for_status()
        return response.json()["data"]

    async def wait_until(self, check: Callable[[], Any], *, timeout: float = 20.0,
                         what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                result = await check()
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last = exc
            else:
                if result:
                    return result
                last = result
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} not reached in {timeout} s (last: {last!r})")

    async def aclose(self) -> None:
        await self.http.aclose()
