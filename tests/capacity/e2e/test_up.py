"""`flotilla up` as a real process: an SDK call works out of the box (the demo pool scales from
zero), and SIGINT stops the process and every worker process it started."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai

from control_plane.providers.processes import ProcessRef, descendants
from tests.support.ports import free_port
from tests.support.processes import REPO_ROOT, child_env


async def _banner(log: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Stop with Ctrl-C" in text:
            return text
        assert proc.poll() is None, text[-3000:]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no banner: {log.read_text()[-3000:]}")


async def test_up_serves_the_sdk_and_sigint_stops_every_child(tmp_path: Path) -> None:
    router_port, cp_port = free_port(), free_port()
    log = tmp_path / "up.log"
    env = child_env({"CONTROL_PLANE_LOCAL_WORKDIR": str(tmp_path / "instances"),
                     "LOG_LEVEL": "info"})
    env.pop("REDIS_URL", None)
    env.pop("ADMIN_TOKEN", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flotilla", "up", "--router-port", str(router_port),
             "--control-plane-port", str(cp_port), "--model", "demo/chat"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT),
            start_new_session=True)
    children: list[ProcessRef] = []
    try:
        text = await _banner(log, proc)
        key = re.search(r"API key:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        assert f"http://127.0.0.1:{router_port}/v1" in text
        assert f"http://127.0.0.1:{cp_port}/" in text
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{router_port}/v1",
                                      api_key=key, max_retries=0, timeout=60) as client:
            done = await client.chat.completions.create(
                model="demo/chat", messages=[{"role": "user", "content": "hi"}])
            assert done.model == "demo/chat" and done.choices[0].message.content
        children = descendants(proc.pid)
        assert len(children) >= 2, "an agent and its simulator"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        deadline = time.monotonic() + 10
        while any(c.alive() for c in children) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert [c.pid for c in children if c.alive()] == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for child in children:
            child.kill()


def test_up_refuses_bad_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flotilla", "up", "--router-port", "9000",
         "--control-plane-port", "9000"], capture_output=True, text=True, env=child_env(),
        cwd=str(REPO_ROOT), timeout=30)
    assert result.returncode == 2
    assert "must differ" in result.stderr
