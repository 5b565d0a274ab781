"""A running Flotilla stack of real processes for the observability tests.

Redis (the session's redis-server), the control plane, two workers (simulator + agent each), and
a router, all on loopback, logging JSON with access logs on. Synchronous on purpose: the stack is
shared by a module (started once), and pytest-asyncio's loops are per test.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

ADMIN_TOKEN = "admin-token-for-observability"
MODEL = "org/observed"
JSON_LOGS = {"LOG_FORMAT": "json", "LOG_LEVEL": "info"}
T = TypeVar("T")


def wait_until(check: Callable[[], T], *, timeout: float, what: str,
               proc: ManagedProcess | None = None, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_text()[-3000:]}")
        try:
            result = check()
        except httpx.HTTPError as exc:
            result, last = None, exc
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout} s (last error: {last!r})")


def wait_http(proc: ManagedProcess, url: str, timeout: float = 30.0) -> None:
    def ok() -> bool:
        return httpx.get(url, timeout=1.0).status_code == 200
    wait_until(ok, timeout=timeout, what=url, proc=proc)


@dataclass
class Worker:
    sim: ManagedProcess
    agent: ManagedProcess
    sim_url: str
    agent_url: str


@dataclass
class Stack:
    logs: Path
    redis_url: str
    prefix: str = field(default_factory=lambda: f"flotilla-obs-{uuid.uuid4().hex[:8]}")
    processes: list[ManagedProcess] = field(default_factory=list)
    control_plane_url: str = ""
    router_url: str = ""
    workers: list[Worker] = field(default_factory=list)

    def _start(self, module: str, *args: str, env: dict[str, str], name: str) -> ManagedProcess:
        proc = ManagedProcess(module, args, env={**JSON_LOGS, **env}, name=name,
                              log_path=self.logs / f"{name}.log")
        self.processes.append(proc.start())
        return proc

    def start(self, workers: int = 2) -> Stack:
        store = {"REDIS_URL": self.redis_url, "STORE_PREFIX": self.prefix}
        port = free_port()
        cp = self._start("control_plane", "--host", "127.0.0.1", "--port", str(port),
                         "--heartbeat-interval", "0.5", "--probe-interval", "0.3",
                         "--probe-failure-threshold", "1",
                         env={**store, "ADMIN_TOKEN": ADMIN_TOKEN}, name="control-plane")
        self.control_plane_url = f"http://127.0.0.1:{port}"
        wait_http(cp, self.control_plane_url + "/healthz")
        for index in range(workers):
            sim_port, agent_port = free_port(), free_port()
            sim = self._start("simulator", "--host", "127.0.0.1", "--port", str(sim_port),
                              "--model", MODEL, "--ttft-ms", "0", "--itl-ms", "0",
                              "--access-log", env={}, name=f"sim-{index}")
            agent = self._start("worker_agent", "--host", "127.0.0.1", "--port", str(agent_port),
                                env={"MODEL_ID": MODEL, "INSTANCE_ID": f"obs-{index}",
                                     "ENGINE_URL": f"http://127.0.0.1:{sim_port}",
                                     "CONTROL_PLANE_URL": self.control_plane_url,
                                     "HEARTBEAT_INTERVAL_S": "0.5", "IMDS_URL": "",
                                     "ENGINE_POLL_INTERVAL_S": "0.1",
                                     "CONTROL_PLANE_BACKOFF_MAX_S": "0.5"},
                                name=f"agent-{index}")
            self.workers.append(Worker(sim, agent, f"http://127.0.0.1:{sim_port}",
                                       f"http://127.0.0.1:{agent_port}"))
        port = free_port()
        router = self._start("router", "--host", "127.0.0.1", "--port", str(port),
                             "--refresh-period", "0.2", "--report-period", "0.1", "--access-log",
                             env=store, name="router")
        self.router_url = f"http://127.0.0.1:{port}"
        wait_http(router, self.router_url + "/readyz")

        def all_ready() -> bool:
            body = httpx.get(self.router_url + "/readyz", timeout=2.0).json()
            return body.get("workers") == workers
        wait_until(all_ready, timeout=40, what=f"{workers} ready workers at the router")
        return self

    def create_key(self) -> str:
        response = httpx.post(self.control_plane_url + "/v1/keys", timeout=10,
                              json={"name": "obs", "models": None, "rpm": None, "tpm": None},
                              headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        response.raise_for_status()
        return str(response.json()["key"])

    def stop(self) -> None:
        # SIGTERM to all at once (each drains on its own), then collect them one by one.
        for proc in self.processes:
            proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            proc.stop()
