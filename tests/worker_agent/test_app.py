"""The agent's HTTP surface in-process, with nothing behind it (engine down, no control plane)."""

from __future__ import annotations

import pytest

from fleet.settings import SettingsError, load_settings
from tests.support.asgi import asgi_client
from tests.support.ports import free_port
from worker_agent.agent import Agent
from worker_agent.app import create_app
from worker_agent.settings import AgentSettings


def settings(**env: str) -> AgentSettings:
    base = {"MODEL_ID": "org/m", "INSTANCE_ID": "i-1", "IMDS_URL": "",
            "ENGINE_URL": f"http://127.0.0.1:{free_port()}", "ENGINE_POLL_INTERVAL_S": "0.05",
            "ENGINE_TIMEOUT_S": "1", "DRAIN_SETTLE_S": "0"}
    return load_settings(AgentSettings, [], {**base, **env})


async def test_healthz_answers_while_readyz_explains_why_not_ready() -> None:
    async with asgi_client(create_app(settings())) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["ready"] is False and body["status"] == "starting"
        assert body["reason"].startswith("engine unhealthy: GET /health failed")


async def test_readyz_says_draining_once_a_drain_starts() -> None:
    agent = Agent(settings(DRAIN_TIMEOUT_S="30", DRAIN_SETTLE_S="30"))
    async with asgi_client(create_app(agent.settings, agent=agent)) as client:
        agent.request_drain("control_plane")
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["reason"] == "draining (control_plane)"
        assert response.json()["status"] == "draining"
        metrics = (await client.get("/metrics")).text
        assert "flotilla_agent_draining 1.0" in metrics
        assert 'flotilla_agent_drains_total{reason="control_plane"} 1.0' in metrics
        beat = agent.build_heartbeat()
        assert beat.status == "draining" and beat.drain_reason == "control_plane"


async def test_metrics_is_promtool_clean_without_engine_or_gpu(promtool: str) -> None:
    import subprocess

    async with asgi_client(create_app(settings())) as client:
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "flotilla_agent_gpu" not in response.text
    assert "flotilla_agent_engine_healthy 0.0" in response.text
    result = subprocess.run([promtool, "check", "metrics"], input=response.content,
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()


def test_an_agent_needs_an_instance_id() -> None:
    with pytest.raises(SettingsError, match="INSTANCE_ID"):
        Agent(load_settings(AgentSettings, [], {"MODEL_ID": "m"}))
