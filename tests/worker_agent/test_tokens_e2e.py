"""Worker tokens end to end: one bootstrap for two agents sharing a file; wrong tokens refused."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.worker_agent.conftest import Stack, eventually, is_ready

REGISTER = 'flotilla_agent_control_plane_calls_total{call="register",outcome="%s"}'


async def test_two_agents_on_one_machine_share_one_bootstrap_through_the_token_file(
        stack: Stack, redis_server, key_prefix: str, tmp_path: Path) -> None:
    cp = stack.control_plane(redis_server.url, key_prefix)
    chat = stack.sim(model="org/model")
    embed = stack.sim(kind="tei", model="org/embedder")
    store = stack.store(redis_server.url, key_prefix)
    await cp.proc.wait_http(cp.url + "/healthz")
    token_file = tmp_path / "shared" / "worker-token"
    # Both start at once, same instance, same token file: only one may bootstrap.
    agents = [
        stack.agent(engine_url=chat.url, control_plane=cp.url,
                    WORKER_AUTH_TOKEN_FILE=str(token_file)),
        stack.agent(model="org/embedder", engine_url=embed.url, control_plane=cp.url,
                    WORKER_AUTH_TOKEN_FILE=str(token_file), ENGINE="tei"),
    ]

    async def both_ready() -> bool:
        workers = await store.list_workers()
        return len(workers) == 2 and all(
            [await is_ready(store, w.worker_id, w.model_id) for w in workers])

    await eventually(both_ready, what="both workers ready", timeout=30)
    counts = [(await stack.metric(a, REGISTER % "bootstrapped"), await stack.metric(
        a, REGISTER % "ok")) for a in agents]
    assert sorted(counts) == [(0.0, 1.0), (1.0, 0.0)]
    token = token_file.read_text().strip()
    for agent in agents:
        assert token not in agent.proc.log_text()
    assert {w.instance_id for w in await store.list_workers()} == {"inst-1"}


async def test_another_instances_token_is_refused_and_retried_with_backoff_only(
        stack: Stack, redis_server, key_prefix: str, tmp_path: Path) -> None:
    cp = stack.control_plane(redis_server.url, key_prefix)
    sim = stack.sim()
    store = stack.store(redis_server.url, key_prefix)
    token_file = tmp_path / "worker-token"
    owner = stack.agent(engine_url=sim.url, control_plane=cp.url,
                        WORKER_AUTH_TOKEN_FILE=str(token_file))
    await eventually(lambda: _enrolled(stack, owner), what="first agent enrolled")

    async def saved() -> bool:
        return token_file.exists() and bool(token_file.read_text().strip())

    await eventually(saved, what="token saved")
    stolen = token_file.read_text().strip()

    # inst-2 presenting inst-1's token: 403. inst-1 presenting a made-up token: 401.
    thief = stack.agent(instance_id="inst-2", engine_url=sim.url, control_plane=cp.url,
                        WORKER_AUTH_TOKEN=stolen, CONTROL_PLANE_BACKOFF_MAX_S="1")
    liar = stack.agent(engine_url=sim.url, control_plane=cp.url, CONTROL_PLANE_BACKOFF_MAX_S="1",
                       WORKER_AUTH_TOKEN="wt-flt-made-up-token-value")
    await thief.proc.wait_http(thief.url + "/healthz")
    await liar.proc.wait_http(liar.url + "/healthz")
    await asyncio.sleep(3.0)

    for agent, status in ((thief, 403), (liar, 401)):
        rejected = await stack.metric(agent, REGISTER % "rejected")
        # Backoff from ~0.15 s doubling to 1 s: about 5 attempts in 3 s; a tight loop would
        # make hundreds.
        assert rejected is not None and 1 <= rejected <= 12, (status, rejected)
        log = agent.proc.log_text()
        assert re.search(rf"refused .*\({status}: ", log), log[-2000:]
        assert await stack.metric(agent, "flotilla_agent_enrolled") == 0.0
        # Serving does not depend on enrollment: the engine is ready, so is the agent.
        assert (await stack.readyz(agent)).status_code == 200
    assert "bound to another instance" in thief.proc.log_text()
    assert "wrong or revoked" in liar.proc.log_text()
    assert {w.instance_id for w in await store.list_workers()} == {"inst-1"}
    for service in (owner, thief, liar, cp):
        log = service.proc.log_text()
        assert stolen not in log and "wt-flt-made-up-token-value" not in log


async def _enrolled(stack: Stack, agent) -> bool:
    return await stack.metric(agent, "flotilla_agent_enrolled") == 1.0
