"""Control-plane fixtures: settings with short intervals, the app in-process on a real Redis, and a
stand-in agent `/readyz` server."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from control_plane.app import create_app
from control_plane.services import ControlPlane
from control_plane.settings import ControlPlaneSettings
from fleet.redis_store import RedisFleetStore
from tests.support.asgi import asgi_client
from tests.support.readyz_server import ReadyzServer, readyz_server
from tests.support.waiting import eventually  # noqa: F401 (imported from here by tests)

ADMIN_TOKEN = "admin-token-for-tests-0123456789"


def make_settings(**overrides: Any) -> ControlPlaneSettings:
    values: dict[str, Any] = dict(
        redis_url=None, admin_token=ADMIN_TOKEN, heartbeat_interval_s=10.0,
        probe_interval_s=60.0, probe_timeout_s=1.0, probe_failure_threshold=1,
        store_check_interval_s=0.05, log_level="debug", providers=())
    values.update(overrides)
    return ControlPlaneSettings(**values)


@dataclasses.dataclass
class Running:
    client: httpx.AsyncClient
    cp: ControlPlane
    store: RedisFleetStore

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def store_url(redis_server: Any) -> str:
    return str(redis_server.url)


@pytest.fixture
async def open_control_plane(store_url: str, key_prefix: str
                             ) -> AsyncIterator[Callable[..., Any]]:
    """`async with open_control_plane(**settings) as running:` an app over a real Redis."""
    stores: list[RedisFleetStore] = []

    @contextlib.asynccontextmanager
    async def opened(url: str | None = None, **overrides: Any) -> AsyncIterator[Running]:
        store = RedisFleetStore(url or store_url, prefix=key_prefix)
        stores.append(store)
        app = create_app(make_settings(**overrides), store=store)
        async with asgi_client(app) as client:
            yield Running(client, app.state.cp, store)

    yield opened
    for store in stores:
        await store.aclose()


@pytest.fixture
async def running(open_control_plane: Callable[..., Any]) -> AsyncIterator[Running]:
    async with open_control_plane() as value:
        yield value


@pytest.fixture
async def agent() -> AsyncIterator[ReadyzServer]:
    async with readyz_server(200) as server:
        yield server


def register_body(instance_id: str = "i-1", *, agent_url: str = "http://127.0.0.1:9080",
                  **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"instance_id": instance_id, "model_id": "m1",
                            "url": "http://127.0.0.1:9000", "agent_url": agent_url}
    body.update(fields)
    return body


def beat(status: str = "ready", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "model_id": "m1", "queue_depth": 0,
                            "inflight": 0}
    body.update(fields)
    return body


def bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


async def enroll(running: Running, instance_id: str = "i-1", **fields: Any) -> tuple[str, str]:
    """Register a worker; returns (worker_id, token)."""
    reply = await running.client.post("/v1/workers/register",
                                      json=register_body(instance_id, **fields))
    assert reply.status_code == 201, reply.text
    return reply.json()["worker_id"], reply.json()["bootstrap_token"]


async def heartbeat(running: Running, worker_id: str, token: str, **fields: Any
                    ) -> httpx.Response:
    status = fields.pop("status", "ready")
    return await running.client.post(f"/v1/workers/{worker_id}/heartbeat",
                                     json=beat(status, **fields), headers=bearer(token))


async def ready_ids(running: Running, model_id: str = "m1") -> set[str]:
    ready = await running.store.ready_workers()
    return {r.worker_id for r in ready.get(model_id, [])}
