"""The dashboard's test bench: the control plane served by uvicorn on a free loopback port (a real
browser needs a real socket), a real Redis, workers enrolled through the worker API, and headless
Chromium over WebDriver; `serve_stack` adds a router and the local provider's real agents and
simulators."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from control_plane.app import create_app
from control_plane.services import ControlPlane
from control_plane.settings import ControlPlaneSettings
from fleet.redis_store import RedisFleetStore
from fleet.serving import Listener, serve_apps
from fleet.store import INSTANCES
from router.app import create_app as create_router
from router.settings import RouterSettings
from tests.conftest import IN_CI
from tests.control_plane.conftest import ADMIN_TOKEN, beat, make_settings, register_body
from tests.support.ports import free_port
from tests.support.webdriver import Browser, chromedriver, chromium_binary


@dataclasses.dataclass
class Served:
    url: str
    cp: ControlPlane
    store: RedisFleetStore
    client: httpx.AsyncClient  # to the served URL, no credentials

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN_TOKEN}"}

    async def enroll(self, instance_id: str, agent_url: str, *, status: str = "ready",
                     instance: dict[str, Any] | None = None, **fields: Any) -> str:
        """Register a worker as its agent would and send one heartbeat; returns its id.
        `instance`: the instance document a capacity provider would have written first
        (provider, pool, instance_type, ...)."""
        if instance is not None:
            await self.store.put_doc(INSTANCES, instance_id, instance)
        reply = await self.client.post("/v1/workers/register",
                                       json=register_body(instance_id, agent_url=agent_url,
                                                          **fields))
        assert reply.status_code == 201, reply.text
        worker_id, token = reply.json()["worker_id"], reply.json()["bootstrap_token"]
        beat_reply = await self.client.post(f"/v1/workers/{worker_id}/heartbeat",
                                            json=beat(status, queue_depth=2, inflight=1),
                                            headers={"authorization": f"Bearer {token}"})
        assert beat_reply.status_code == 200, beat_reply.text
        return str(worker_id)

    async def worker(self, worker_id: str) -> dict[str, Any]:
        reply = await self.client.get(f"/v1/workers/{worker_id}", headers=self.admin)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


@contextlib.asynccontextmanager
async def serve_control_plane(redis_url: str, prefix: str, **overrides: Any
                              ) -> AsyncIterator[Served]:
    store = RedisFleetStore(redis_url, prefix=prefix)
    app = create_app(make_settings(**overrides), store=store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_config=None, access_log=False, loop="none"))
    # uvicorn's own SIGINT/SIGTERM handlers belong to a real process, not to a test run.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            yield Served(url, app.state.cp, store, client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        await store.aclose()


def require_chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths; skip (fail in CI) when the Debian packages are absent."""
    chromium, driver = chromium_binary(), shutil.which("chromedriver")
    if chromium is None or driver is None:
        message = ("headless Chromium is not installed (Debian packages `chromium` and "
                   "`chromium-driver`, installed by .ci/run)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


@contextlib.asynccontextmanager
async def browser_session(log_dir: Path, *, width: int = 1280, height: int = 900
                          ) -> AsyncIterator[Browser]:
    chromium, driver = require_chromium()
    async with chromedriver(driver, chromium, log_dir / "chromedriver.log") as webdriver, \
            webdriver.session(width=width, height=height) as browser:
        yield browser


async def sign_in(browser: Browser, url: str, token: str = ADMIN_TOKEN) -> None:
    await browser.get(url + "/")
    field = await browser.find("#token-input")
    await browser.type(field, token)
    await browser.click(await browser.find("#token-submit"))


async def wait_refreshed(browser: Browser, after: int = 0) -> int:
    """Wait for a completed refresh newer than `after` (ms since the epoch, the page's clock)."""
    value = await browser.wait_for(
        "const r = Number(document.body.dataset.refreshed || 0);"
        "return r > arguments[0] ? r : 0;", after, message="a dashboard refresh")
    return int(value)


def png_size(png: bytes) -> tuple[int, int]:
    """Decode a PNG enough to trust it: signature, chunk CRCs, IHDR, and the inflated image data
    has exactly one filter byte plus width x channels bytes per row. Returns (width, height)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    offset, width, height, channels, idat = 8, 0, 0, 0, b""
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset:offset + 4])
        kind = png[offset + 4:offset + 8]
        data = png[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length:offset + 12 + length])
        assert zlib.crc32(kind + data) == crc, f"bad CRC in chunk {kind!r}"
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", data[:10])
            assert depth == 8, depth
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            idat += data
        elif kind == b"IEND":
            break
        offset += 12 + length
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * channels), "image data does not match its size"
    return width, height


FAST_AGENT = ("--engine-poll-interval-s 0.2 --drain-settle-s 0 --drain-timeout-s 5 "
              "--engine-stop-grace-s 3 --backoff-max-s 0.5 --heartbeat-interval-s 0.5")


@dataclasses.dataclass
class Stack:
    cp: ControlPlane
    url: str  # the control plane
    router_url: str
    admin: httpx.AsyncClient  # to the control plane, with the admin token


@contextlib.asynccontextmanager
async def serve_stack(redis_url: str, prefix: str, workdir: Path, **overrides: Any
                      ) -> AsyncIterator[Stack]:
    """The control plane with the local provider (real agent + simulator processes, fake prices)
    and a router, in this event loop on loopback ports, as `flotilla up` runs them. At exit the
    provider stops every agent it started (by PID)."""
    cp_port, router_port = free_port(), free_port()
    values: dict[str, Any] = dict(
        host="127.0.0.1", port=cp_port, admin_token=ADMIN_TOKEN, heartbeat_interval_s=0.5,
        probe_interval_s=0.5, probe_failure_threshold=1, autoscale_interval_s=0.5,
        autoscale_interval_at_zero_s=0.5, local_workdir=str(workdir / "instances"),
        local_boot_delay_s=0.2, local_agent_args=FAST_AGENT, local_simulator_args="--load-s 0",
        local_prices=("sim-gpu=0.45", "sim-big=1.2"), local_terminate_grace_s=5.0,
        log_level="warning")
    values.update(overrides)
    store = RedisFleetStore(redis_url, prefix=prefix)
    cp_app = create_app(ControlPlaneSettings(**values), store=store)
    router_app = create_router(RouterSettings(
        host="127.0.0.1", port=router_port, redis_url=None, report_period_s=0.2,
        refresh_period_s=0.3, log_level="warning"), store=store)
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_apps(
        [Listener(cp_app, "127.0.0.1", cp_port, "control-plane"),
         Listener(router_app, "127.0.0.1", router_port, "router")],
        stop=stop, handle_signals=False, timeout_graceful_shutdown=5))
    url = f"http://127.0.0.1:{cp_port}"
    try:
        while getattr(cp_app.state, "cp", None) is None:
            if serving.done():
                serving.result()
                raise RuntimeError("the stack stopped before it started")
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=url, timeout=10, headers={
                "authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            yield Stack(cp_app.state.cp, url, f"http://127.0.0.1:{router_port}", admin)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 60)
        await store.aclose()
