"""Take the dashboard screenshot in docs/img/ from a real stack on this machine.

Starts a redis-server, the control plane with the local provider (real worker agents supervising
simulators, fake prices) and a router in one event loop on loopback ports (the tests'
`serve_stack`); creates two pools and a route, waits for the first replica, sends a few requests
through the router (so the routers report breaker states), starts a burst, and photographs the
page in headless Chromium. Everything it started is stopped at the end (the provider stops its
agents by PID).

    python scripts/dashboard_screenshot.py [--out docs/img/dashboard.png]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.control_plane.conftest import ADMIN_TOKEN  # noqa: E402
from tests.control_plane.dashboard_support import serve_stack  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.waiting import eventually  # noqa: E402
from tests.support.webdriver import chromedriver, chromium_binary  # noqa: E402

MODEL = "sim/chat-small"


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
    async with serve_stack(redis_url, "flotilla-shot", workdir, local_boot_delay_s=1.0,
                           local_simulator_args="--load-s 1") as stack:
        await stage(stack.admin, stack.router_url)
        await photograph(stack.url, out, chromium, driver, width, height)
        with contextlib.suppress(httpx.HTTPError):
            for burst in (await stack.admin.get("/v1/bursts")).json()["data"]:
                await stack.admin.post(f"/v1/bursts/{burst['id']}/cancel")


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

    await eventually(chat_ready, message="the first chat replica ready", timeout=90,
                     interval=0.2)
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

    await eventually(burst_moved, message="the burst under way", timeout=60, interval=0.2)
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
