"""Router test fixtures: real simulator processes, a fleet store seeded the way the control plane
writes it (that is the contract, not a mock), and routers served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from fleet.catalog import ApiKeyRecord
from fleet.redis_store import RedisFleetStore
from fleet.schemas import WorkerRecord
from fleet.secrets import display_prefix, new_api_key, new_id, sha256_hex
from fleet.serving import Listener, serve_apps
from fleet.store import KEYS, POOLS, ROUTES, FleetStore
from router.app import create_app
from router.runtime import RouterRuntime
from router.settings import RouterSettings
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

INSTANT = ("--ttft-ms", "0", "--itl-ms", "0")

# Short periods so that tests see changes quickly; every wait in a test is a poll with a bound.
FAST = dict(report_period_s=0.05, refresh_period_s=0.2, store_timeout_s=0.5,
            cold_start_wait_s=0.5, backoff_base_s=0.01, backoff_max_s=0.05,
            first_byte_timeout_s=10.0, idle_timeout_s=10.0, key_cache_ttl_s=30.0)


@dataclass
class Sim:
    proc: ManagedProcess
    port: int
    model: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stats(self) -> dict[str, int]:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(self.url + "/admin/stats")).json()

    async def put_faults(self, **faults: object) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            (await client.put(self.url + "/admin/faults", json=faults)).raise_for_status()

    async def wait_stats(self, timeout: float = 15.0,
                         **expected: Callable[[int], bool] | int) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats()
            if all(v(stats[k]) if callable(v) else stats[k] == v for k, v in expected.items()):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"simulator stats never reached {expected}: {stats}")
            await asyncio.sleep(0.02)


@pytest.fixture
def start_sim(processes: Callable[..., ManagedProcess]) -> Callable[..., Awaitable[Sim]]:
    """A simulator process: `await start_sim("m1", "--ttft-ms", "0", ...)`."""

    async def start(model: str, *args: str, kind: str = "vllm") -> Sim:
        port = free_port()
        proc = processes("simulator", "--kind", kind, "--port", str(port), "--model", model,
                         *args, name=f"sim-{model}-{port}")
        sim = Sim(proc, port, model)
        await proc.wait_http(sim.url + "/health", timeout=20)
        return sim

    return start


@dataclass
class Fleet:
    """Writes the store exactly as the control plane does (records + ready sets, documents,
    change notifications)."""

    store: FleetStore
    records: dict[str, WorkerRecord] = field(default_factory=dict)

    async def add_worker(self, sim: Sim, *, worker_id: str | None = None,
                         model: str | None = None, pool: str | None = None,
                         ready: bool = True, queue_depth: int = 0) -> WorkerRecord:
        now = time.time()
        worker_id = worker_id or f"w-{sim.port}"
        record = WorkerRecord(worker_id=worker_id, instance_id=f"i-{worker_id}",
                              model_id=model or sim.model, engine="vllm", url=sim.url,
                              agent_url=f"http://127.0.0.1:{sim.port}", registered_at=now,
                              last_heartbeat=now, status="ready", pool=pool,
                              queue_depth=queue_depth, probe_passed_at=now)
        await self.save(record, ready=ready)
        return record

    async def save(self, record: WorkerRecord, *, ready: bool) -> None:
        self.records[record.worker_id] = record
        await self.store.save_workers([(record, ready)])
        await self.store.publish("workers")

    async def set_ready(self, worker_id: str, ready: bool) -> None:
        await self.save(self.records[worker_id], ready=ready)

    async def remove(self, worker_id: str) -> None:
        await self.store.delete_worker(worker_id)
        await self.store.publish("workers")

    async def put_route(self, model: str, targets: list[dict[str, Any]]) -> None:
        await self.store.put_doc(ROUTES, model, {"targets": targets, "stream_resume": True})
        await self.store.publish("routes")

    async def put_pool(self, name: str, model_id: str, **fields: Any) -> None:
        doc = {"model_id": model_id, "engine": "vllm", "provider": "local", "min_replicas": 0,
               "max_replicas": 2, **fields}
        await self.store.put_doc(POOLS, name, doc)
        await self.store.publish("pools")

    async def create_key(self, name: str = "test", *, models: list[str] | None = None,
                         rpm: int | None = None, tpm: int | None = None) -> str:
        raw = new_api_key()
        record = ApiKeyRecord(id=new_id("key"), name=name, key_hash=sha256_hex(raw),
                              prefix=display_prefix(raw), created_at=time.time(),
                              models=models, rpm=rpm, tpm=tpm)
        await self.store.put_doc(KEYS, record.key_hash, record)
        await self.store.publish("keys")
        return raw

    async def delete_key(self, raw: str) -> None:
        await self.store.delete_doc(KEYS, sha256_hex(raw))
        await self.store.publish("keys")


@pytest.fixture
async def store(redis_server: Any, key_prefix: str) -> AsyncIterator[FleetStore]:
    backend = RedisFleetStore(redis_server.url, prefix=key_prefix)
    await backend.ensure_epoch("test-epoch")
    yield backend
    await backend.aclose()


@pytest.fixture
def fleet(store: FleetStore) -> Fleet:
    return Fleet(store)


@dataclass
class RouterServer:
    url: str
    runtime: RouterRuntime
    app: Any
    clients: dict[str, openai.AsyncOpenAI] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def shutdown(self) -> None:
        """Graceful stop, as on SIGTERM (lifespan shutdown included)."""
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)

    def client(self, key: str = "unused") -> openai.AsyncOpenAI:
        """An async SDK client without retries of its own (closed at teardown)."""
        client = self.clients.get(key)
        if client is None:
            client = self.clients[key] = openai.AsyncOpenAI(
                base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=30)
        return client

    def sync_client(self, key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=30)

    async def wait_workers(self, count: int, timeout: float = 10.0) -> None:
        """Until this router's snapshot holds `count` ready workers."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.runtime.keeper.snapshot()
            if sum(len(v) for v in snapshot.by_model.values()) == count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"router never saw {count} workers: {snapshot.by_model}")
            await asyncio.sleep(0.02)


@pytest.fixture
def upstream_client() -> str:
    """The router's upstream client in these tests; modules that exercise the relay override
    this fixture with both clients as parameters."""
    return "httptools"


@pytest.fixture
async def start_router(store: FleetStore, upstream_client: str
                       ) -> AsyncIterator[Callable[..., Awaitable[RouterServer]]]:
    """Routers served by uvicorn in this test's event loop (stopped at teardown)."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    servers: list[RouterServer] = []

    async def start(*, backend: FleetStore | None = None, **overrides: Any) -> RouterServer:
        settings = RouterSettings(**{"host": "127.0.0.1", "port": free_port(), **FAST,
                                     "upstream_client": upstream_client, **overrides})
        app = create_app(settings, store=backend or store)
        stop = asyncio.Event()
        task = asyncio.create_task(serve_apps(
            [Listener(app, settings.host, settings.port, name="router")], stop=stop,
            timeout_graceful_shutdown=2))
        stops.append((stop, task))
        url = f"http://127.0.0.1:{settings.port}"
        deadline = time.monotonic() + 15
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url + "/healthz")).status_code == 200:
                        break
                if task.done():
                    task.result()
                if time.monotonic() > deadline:
                    raise TimeoutError("router did not start")
                await asyncio.sleep(0.02)
        server = RouterServer(url, app.state.runtime, app, stop=stop, task=task)
        servers.append(server)
        return server

    yield start
    for server in servers:
        for client in server.clients.values():
            await client.close()
    for stop, task in reversed(stops):
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
