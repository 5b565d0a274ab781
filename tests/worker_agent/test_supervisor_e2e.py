"""Supervisor mode with the simulator as the engine: crash, restart, readiness again, no orphan."""

from __future__ import annotations

import os
import re
import sys

import httpx

from tests.support.ports import free_port
from tests.worker_agent.conftest import Stack, eventually

RESTARTS = "flotilla_agent_engine_restarts_total"


def engine_pids(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"engine started \(pid (\d+)\)", log)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"


async def test_a_crashed_engine_is_restarted_and_must_warm_up_again(stack: Stack) -> None:
    engine_port = free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    agent = stack.agent(engine_url=engine_url, control_plane=None, extra=(
        "--engine-cmd", f"{sys.executable} -m simulator --kind vllm --host 127.0.0.1 "
                        f"--port {engine_port} --model org/model"))
    await agent.proc.wait_http(agent.url + "/readyz", timeout=30)
    first = engine_pids(agent.proc.log_text())[0]

    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        # The simulator exits hard on the next inference request.
        (await http.put(engine_url + "/admin/faults", json={"crash_after": 0})).raise_for_status()
        try:
            await http.post(engine_url + "/v1/completions",
                            json={"model": "org/model", "prompt": "x", "max_tokens": 1})
        except httpx.HTTPError:
            pass

    async def restarted() -> bool:
        return (await stack.metric(agent, RESTARTS) or 0) >= 1

    await eventually(restarted, what="a restart of the crashed engine")
    await agent.proc.wait_http(agent.url + "/readyz", timeout=30)
    pids = engine_pids(agent.proc.log_text())
    assert len(pids) == 2 and pids[1] != first and not alive(first)
    log = agent.proc.log_text()
    assert re.search(r"engine \(pid \d+\) exited with code \d+ after [\d.]+ s; restarting", log)
    assert log.count("engine warm-up passed") == 2  # the new process proved itself again

    # The agent killed without any cleanup: the engine goes with it (parent-death signal).
    agent.proc.kill()

    async def engine_gone() -> bool:
        return not alive(pids[1])

    await eventually(engine_gone, what="the orphaned engine to stop")
