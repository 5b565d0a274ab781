"""The agent against a control plane that restarts, loses its Redis, or forgets the worker."""

from __future__ import annotations

from pathlib import Path

from tests.worker_agent.conftest import Stack, eventually, is_ready, worker_of

HEARTBEATS_OK = 'flotilla_agent_control_plane_calls_total{call="heartbeat",outcome="ok"}'
HEARTBEATS_UNREACHABLE = ('flotilla_agent_control_plane_calls_total{call="heartbeat",'
                          'outcome="unreachable"}')
BOOTSTRAPPED = 'flotilla_agent_control_plane_calls_total{call="register",outcome="bootstrapped"}'


async def test_heartbeats_resume_after_a_control_plane_restart_while_serving_goes_on(
        stack: Stack, redis_server, key_prefix: str) -> None:
    cp = stack.control_plane(redis_server.url, key_prefix)
    sim = stack.sim()
    store = stack.store(redis_server.url, key_prefix)
    agent = stack.agent(engine_url=sim.url, control_plane=cp.url)
    await agent.proc.wait_http(agent.url + "/readyz", timeout=30)
    record = await eventually(lambda: worker_of(store), what="worker record")
    await eventually(lambda: is_ready(store, record.worker_id), what="ready")

    cp.proc.stop()
    # The control plane is away: the agent stays ready and keeps retrying with backoff.
    await eventually(lambda: stack.metric(agent, HEARTBEATS_UNREACHABLE), what="failed beats")
    assert (await stack.readyz(agent)).status_code == 200
    before = (await worker_of(store)).last_heartbeat  # type: ignore[union-attr]

    cp = stack.restart(cp)

    async def fresh_heartbeat() -> bool:
        current = await worker_of(store)
        return current is not None and current.last_heartbeat > before

    await eventually(fresh_heartbeat, what="a heartbeat after the restart")
    await eventually(lambda: is_ready(store, record.worker_id), what="ready again")
    current = await worker_of(store)
    assert current is not None and current.worker_id == record.worker_id
    assert await stack.metric(agent, BOOTSTRAPPED) == 1.0  # the same token all along
    assert "control plane reachable again" in agent.proc.log_text()


async def test_a_control_plane_that_lost_its_store_gets_a_new_token_from_re_registration(
        stack: Stack, redis_factory, key_prefix: str, tmp_path: Path) -> None:
    redis = redis_factory()
    cp = stack.control_plane(redis.url, key_prefix)
    sim = stack.sim()
    store = stack.store(redis.url, key_prefix)
    token_file = tmp_path / "worker-token"
    agent = stack.agent(engine_url=sim.url, control_plane=cp.url,
                        WORKER_AUTH_TOKEN_FILE=str(token_file))
    record = await eventually(lambda: worker_of(store), what="worker record")
    await eventually(lambda: is_ready(store, record.worker_id), what="ready")
    first_token = token_file.read_text().strip()

    # Redis flushed under a running control plane: it rewrites what it holds; nothing to redo.
    redis.restart()
    await eventually(lambda: worker_of(store), what="record rewritten after the flush")
    assert token_file.read_text().strip() == first_token

    # Redis flushed AND the control plane restarted: everything is forgotten. Heartbeats are
    # refused, the agent registers again, presents an unknown token and gets a new one.
    cp.proc.stop()
    redis.restart()
    cp = stack.restart(cp)

    async def re_enrolled() -> bool:
        return (await stack.metric(agent, BOOTSTRAPPED) or 0) >= 2

    await eventually(re_enrolled, what="re-registration with a new bootstrap token")
    second_token = token_file.read_text().strip()
    assert second_token != first_token and second_token.startswith("wt-flt-")
    again = await eventually(lambda: worker_of(store), what="worker known again")
    await eventually(lambda: is_ready(store, again.worker_id), what="ready again")
    log = agent.proc.log_text()
    assert "no longer knows worker" in log
    for token in (first_token, second_token):
        assert token not in log and token not in cp.proc.log_text()


async def test_a_killed_agent_expires_after_three_missed_heartbeats(
        stack: Stack, redis_server, key_prefix: str) -> None:
    cp = stack.control_plane(redis_server.url, key_prefix)
    sim = stack.sim()
    store = stack.store(redis_server.url, key_prefix)
    agent = stack.agent(engine_url=sim.url, control_plane=cp.url)
    record = await eventually(lambda: worker_of(store), what="worker record")
    await eventually(lambda: is_ready(store, record.worker_id), what="ready")

    agent.proc.kill()  # no drain, no deregistration: it just goes silent

    async def forgotten() -> bool:
        return await worker_of(store) is None

    await eventually(forgotten, what="expiry of the silent worker")
    assert not await is_ready(store, record.worker_id)
