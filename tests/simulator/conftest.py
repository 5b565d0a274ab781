"""Simulator processes for tests: shared read-only ones per module, private ones per test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

INSTANT = ("--ttft-ms", "0", "--itl-ms", "0")


@dataclass
class Sim:
    proc: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **options: object) -> openai.OpenAI:
        # No SDK retries: a test must see exactly what the engine answered.
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="sim-key", max_retries=0,
                             timeout=30, **options)  # type: ignore[arg-type]

    def async_client(self, **options: object) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="sim-key", max_retries=0,
                                  timeout=30, **options)  # type: ignore[arg-type]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def post(self, path: str, body: object = None, **options: object) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=10, **options)  # type: ignore[arg-type]

    def put_faults(self, **faults: object) -> dict[str, object]:
        response = httpx.put(self.url + "/admin/faults", json=faults, timeout=10)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, int]:
        return self.get("/admin/stats").json()

    async def wait_stats(self, timeout: float = 15.0, **expected: int) -> dict[str, int]:
        """Poll /admin/stats until it shows `expected` (the engine sees a disconnect a moment
        after the client closes)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                stats = (await client.get(self.url + "/admin/stats")).json()
                if all(stats[key] == value for key, value in expected.items()):
                    return stats
                if time.monotonic() > deadline:
                    raise AssertionError(f"stats never reached {expected}: {stats}")
                await asyncio.sleep(0.02)


def _wait_ready(proc: ManagedProcess, url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready:\n{proc.log_text()[-3000:]}")


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Sim]]:
    """Start simulators that the tests of a module share; tests must not change their faults."""
    started: list[ManagedProcess] = []
    log_dir = tmp_path_factory.mktemp("sim-logs")

    def start(*args: str) -> Sim:
        port = free_port()
        proc = ManagedProcess("simulator", ["--port", str(port), *args],
                              log_path=log_dir / f"sim-{port}.log", name="shared-sim").start()
        started.append(proc)
        sim = Sim(proc, port)
        _wait_ready(proc, sim.url + "/health")
        return sim

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def start_sim(processes: Callable[..., ManagedProcess]) -> Callable[..., Awaitable[Sim]]:
    """A private simulator for one test: `await start_sim("--kind", "tei", ...)`."""

    async def start(*args: str, ready: str | None = "/health", module: str = "simulator",
                    command: tuple[str, ...] = ()) -> Sim:
        port = free_port()
        proc = processes(module, *command, "--port", str(port), *args)
        sim = Sim(proc, port)
        if ready is not None:
            await proc.wait_http(sim.url + ready, timeout=20)
        return sim

    return start
