"""Enrollment end to end: agent + real control plane + simulator + real Redis, over loopback."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.support.ports import free_port
from tests.worker_agent.conftest import Stack, eventually, is_ready, worker_of


def assert_not_in_logs(secret: str, *services) -> None:
    for service in services:
        assert secret not in service.proc.log_text(), f"token leaked in {service.proc.name} log"


async def test_agent_enrolls_with_a_bootstrap_token_kept_private_and_reused_after_restart(
        stack: Stack, redis_server, key_prefix: str, tmp_path: Path) -> None:
    cp = stack.control_plane(redis_server.url, key_prefix)
    store = stack.store(redis_server.url, key_prefix)
    await cp.proc.wait_http(cp.url + "/healthz")
    token_file = tmp_path / "state" / "worker-token"
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    # The agent starts first (as on a machine booting): no engine yet, then a loading engine.
    agent = stack.agent(engine_url=sim_url, control_plane=cp.url,
                        WORKER_AUTH_TOKEN_FILE=str(token_file))
    await agent.proc.wait_http(agent.url + "/healthz")
    record = await eventually(lambda: worker_of(store), what="worker record")
    assert record.status == "starting" and record.url == sim_url
    assert record.agent_url == agent.url
    assert (await stack.readyz(agent)).json()["reason"].startswith("engine unhealthy")

    sim = stack.sim("--load-s", "4", port=sim_port)

    async def loading() -> bool:
        reply = await stack.readyz(agent)
        return reply.status_code == 503 and reply.json()["reason"] == \
            "engine unhealthy: GET /health answered 503"

    await eventually(loading, what="the engine's loading period seen by the agent")
    assert not await is_ready(store, record.worker_id)

    # The engine finishes loading: the agent's readiness, then the control plane's probe.
    await agent.proc.wait_http(agent.url + "/readyz", timeout=30)
    await eventually(lambda: is_ready(store, record.worker_id), what="worker in the ready set")
    ready = await worker_of(store)
    assert ready is not None and ready.status == "ready" and ready.probe_passed_at is not None

    async def load_reported() -> bool:
        current = await worker_of(store)
        return current is not None and current.kv_cache_usage is not None and \
            current.requests_per_s is not None

    await eventually(load_reported, what="engine signals in the heartbeats")
    current = await worker_of(store)
    assert current is not None and current.queue_depth == 0 and current.running == 0
    assert current.gpu_util is None  # no GPU on this machine: nothing invented

    token = token_file.read_text().strip()
    assert token.startswith("wt-flt-")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    # A crash and a restart: the token is read back from the file, no new bootstrap.
    agent.proc.kill()
    restarted = stack.agent(engine_url=sim.url, control_plane=cp.url, port=agent.port,
                            WORKER_AUTH_TOKEN_FILE=str(token_file))
    await restarted.proc.wait_http(restarted.url + "/readyz", timeout=30)

    async def registered_again() -> bool:
        value = await stack.metric(restarted, 'flotilla_agent_control_plane_calls_total{'
                                              'call="heartbeat",outcome="ok"}')
        return bool(value)

    await eventually(registered_again, what="heartbeats after restart")
    assert await stack.metric(restarted, 'flotilla_agent_control_plane_calls_total{'
                                         'call="register",outcome="ok"}') == 1.0
    assert await stack.metric(restarted, 'flotilla_agent_control_plane_calls_total{'
                                         'call="register",outcome="bootstrapped"}') == 0.0
    assert token_file.read_text().strip() == token
    assert "worker token loaded from" in restarted.proc.log_text()
    assert_not_in_logs(token, agent, restarted, cp)
