"""Take the dashboard screenshot in docs/img/ from a real stack on this machine.

Starts a redis-server, the control plane with the local provider (real worker agents supervising
simulators, fake prices) and a router in one event loop on loopback ports; creates two pools and a
route, waits for the first replica, sends a few requests through the router (so the routers report
breaker states), starts a burst, and photographs the page in headless Chromium. Everything it
started is stopped at the end (the provider stops its agents by PID).

    python scripts/dashboard_screenshot.py [--out docs/img/dashboard.png]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control_plane.app import create_app as create_control_plane  # noqa: E402
from control_plane.settings import ControlPlaneSettings  # noqa: E402
from fleet.redis_store import RedisFleetStore  # noqa: E402
from fleet.serving import Listener, serve_apps  # noqa: E402
from router.app import create_app as create_router  # noqa: E402
from router.settings import RouterSettings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.webdriver import chromedriver, chromium_binary  # noqa: E402

ADMIN_TOKEN = "dashboard-screenshot-admin-token"
MODEL = "sim/chat-small"
FAST_AGENT = ("--engine-poll-interval-s 0.2 --drain-settle-s 0 --drain-timeout-s 5 "
              "--engine-stop-grace-s 3 --backoff-max-s 0.5 --heartbeat-interval-s 1")


async def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.2)


async def main(out: Path, width: int, height: int) -> None:
    chromium, driver = chromium_binary(), "/usr/bin/chromedriver"
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian packages chromium, chromium-driver)")
    with tempfile.TemporaryDirectory(prefix="flotilla-shot-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir / "redis").start()
        try:
            await run_stack(redis.url, workdir, out, chromium, driver, width, height)
        finally:
            redis.stop()


async def run_stack(redis_url: str, workdir: Path, out: Path, chromium: str, driver: str,
                    width: int, height: int) -> None:
    cp_port, router_port = free_port(), free_port()
    settings = ControlPlaneSettings(
        host="127.0.0.1", port=cp_port, admin_token=ADMIN_TOKEN, heartbeat_interval_s=1.0,
        probe_interval_s=1.0, autoscale_interval_s=1.0, local_workdir=str(workdir / "instances"),
        local_boot_delay_s=1.0, local_agent_args=FAST_AGENT, local_simulator_args="--load-s 1",
        local_prices=("sim-gpu=0.45", "sim-big=1.2"), local_terminate_grace_s=5.0,
        log_level="warning")
    store = RedisFleetStore(redis_url, prefix="flotilla-shot")
    router_settings = RouterSettings(host="127.0.0.1", port=router_port, redis_url=None,
                                     report_period_s=0.5, refresh_period_s=0.5, log_level="warning")
    cp_app = create_control_plane(settings, store=store)
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_apps(
        [Listener(cp_app, "127.0.0.1", cp_port, "control-plane"),
         Listener(create_router(router_settings, store=store), "127.0.0.1", router_port,
                  "router")], stop=stop, handle_signals=False, timeout_graceful_shutdown=5))
    cp_url, router_url = f"http://127.0.0.1:{cp_port}", f"http://127.0.0.1:{router_port}"
    try:
        async with httpx.AsyncClient(base_url=cp_url, timeout=10, headers={
                "authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            await until(lambda: getattr(cp_app.state, "cp", None) is not None, "control plane")
            await stage(admin, router_url)
            await photograph(cp_url, out, chromium, driver, width, height)
            with contextlib.suppress(httpx.HTTPError):
                for burst in (await admin.get("/v1/bursts")).json()["data"]:
                    await admin.post(f"/v1/bursts/{burst['id']}/cancel")
    finally:
        stop.set()
        await asyncio.wait_for(serving, 60)
        await store.aclose()


async def stage(admin: httpx.AsyncClient, router_url: str) -> None:
    pools = {
        "chat": {"model_id": MODEL, "engine": "vllm", "provider": "local", "min_replicas": 1,
                 "max_replicas": 4, "target_queue_depth": 8, "ttft_p95_slo_ms": 800,
                 "instance_types": ["sim-gpu"], "max_price_per_hour": 2.0},
        "batch": {"model_id": "sim/chat-large", "engine": "vllm", "provider": "local",
                  "min_replicas": 0, "max_replicas": 2, "instance_types": ["sim-big"],
                  "scale_to_zero_after_s": 300},
    }
    for name, body in pools.items():
        (await admin.put(f"/v1/pools/{name}", json=body)).raise_for_status()
    (await admin.put(f"/v1/routes/{MODEL}", json={"targets": [{"pool": "chat"}]}
                     )).raise_for_status()

    async def chat_ready() -> bool:
        status = (await admin.get("/v1/pools/chat")).json()["status"]
        return bool(status["ready_replicas"] >= 1)

    await until(chat_ready, "the first chat replica ready", timeout=90)
    key = (await admin.post("/v1/keys", json={"name": "screenshot"})).json()["key"]
    async with httpx.AsyncClient(base_url=router_url, timeout=30, headers={
            "authorization": f"Bearer {key}"}) as client:
        for i in range(12):  # bounded, loopback only
            reply = await client.post("/v1/chat/completions", json={
                "model": MODEL, "max_tokens": 16,
                "messages": [{"role": "user", "content": f"hello {i}"}]})
            reply.raise_for_status()
    (await admin.post("/v1/bursts", json={"pool": "chat", "replicas": 2, "duration_s": 1800,
                                          "budget_usd": 3.0})).raise_for_status()

    async def burst_moved() -> bool:
        burst = (await admin.get("/v1/bursts")).json()["data"][0]
        return burst["state"] != "requesting_spot" and len(burst["events"]) >= 2

    await until(burst_moved, "the burst under way", timeout=60)
    await asyncio.sleep(2.0)  # let the routers report and the cost ledger tick


async def photograph(cp_url: str, out: Path, chromium: str, driver: str, width: int,
                     height: int) -> None:
    with tempfile.TemporaryDirectory() as logs:
        async with chromedriver(driver, chromium, Path(logs) / "chromedriver.log") as webdriver, \
                webdriver.session(width=width, height=height) as browser:
            await browser.get(cp_url + "/")
            await browser.type(await browser.find("#token-input"), ADMIN_TOKEN)
            await browser.click(await browser.find("#token-submit"))
            await browser.wait_for("return document.body.dataset.refreshed",
                                   message="a refresh")
            await browser.screenshot(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/dashboard.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1180)
    args = parser.parse_args()
    asyncio.run(main(args.out, args.width, args.height))
