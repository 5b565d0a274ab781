"""`python -m router` as a real process: settings, the sync SDK, metrics that promtool accepts."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import openai

from tests.router.conftest import INSTANT, Fleet
from tests.support.ports import free_port
from tests.support.processes import REPO_ROOT, child_env


def test_router_refuses_to_start_without_redis_url() -> None:
    env = child_env()
    env.pop("REDIS_URL", None)
    result = subprocess.run([sys.executable, "-m", "router", "--port", str(free_port())],
                            env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "REDIS_URL is required" in result.stderr


def test_bad_setting_names_the_flag() -> None:
    result = subprocess.run([sys.executable, "-m", "flotilla.cli", "router", "--policy", "best"],
                            env=child_env({"REDIS_URL": "redis://127.0.0.1:1/0"}), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--policy must be one of" in result.stderr


async def test_router_process_serves_the_sync_sdk_and_valid_metrics(
        redis_server, key_prefix: str, fleet: Fleet, start_sim, processes, promtool: str) -> None:
    sim = await start_sim("m1", *INSTANT)
    await fleet.add_worker(sim)
    key = await fleet.create_key("proc")
    port = free_port()
    router = processes("router", "--host", "127.0.0.1", "--port", str(port),
                       env={"REDIS_URL": redis_server.url, "STORE_PREFIX": key_prefix,
                            "LOG_FORMAT": "json"})
    await router.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30)

    def use_sdk() -> tuple[str, str]:
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                           max_retries=0, timeout=30) as client:
            done = client.chat.completions.create(model="m1",
                                                  messages=[{"role": "user", "content": "hi"}])
            streamed = "".join(c.choices[0].text for c in
                               client.completions.create(model="m1", prompt="hi", stream=True)
                               if c.choices)
            return done.choices[0].message.content or "", streamed

    done, streamed = await asyncio.to_thread(use_sdk)
    assert done and streamed
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    check = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'flotilla_router_requests_total{model="m1",status="200",target="model:m1"} 2.0' \
        in metrics
    # The raw key never reaches the logs; JSON lines carry the request id.
    router.stop()
    log = router.log_text()
    assert key not in log
    assert redis_server.url not in log
