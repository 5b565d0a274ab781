"""Load signals read from the simulator's real /metrics (vLLM and TEI kinds), agent in-process."""

from __future__ import annotations

import asyncio

import httpx
import openai

from fleet.settings import load_settings
from tests.support.asgi import asgi_client
from tests.worker_agent.conftest import Stack, eventually
from worker_agent.agent import Agent
from worker_agent.app import create_app
from worker_agent.settings import AgentSettings


def agent_for(engine: str, engine_url: str, model: str) -> Agent:
    return Agent(load_settings(AgentSettings, [], {
        "MODEL_ID": model, "INSTANCE_ID": "i-1", "ENGINE": engine, "ENGINE_URL": engine_url,
        "IMDS_URL": "", "ENGINE_POLL_INTERVAL_S": "0.05", "METRICS_WINDOW_S": "30"}))


def value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    return None


async def test_vllm_signals_come_from_the_engine_metrics(stack: Stack) -> None:
    sim = stack.sim("--ttft-ms", "40", "--itl-ms", "5", "--output-tokens", "8")
    await sim.proc.wait_http(sim.url + "/health")
    agent = agent_for("vllm", sim.url, "org/model")
    async with asgi_client(create_app(agent.settings, agent=agent)) as client:
        await eventually(lambda: _ready(client), what="ready")
        openai_client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
        await asyncio.gather(*(openai_client.chat.completions.create(
            model="org/model", messages=[{"role": "user", "content": "hello"}])
            for _ in range(12)))
        await openai_client.close()

        async def measured() -> str | None:
            # The agent's numbers are one poll old at most: wait for the poll after the last
            # request finished.
            text = (await client.get("/metrics")).text
            done = value(text, "flotilla_agent_engine_queue_depth") == 0.0
            return text if done and value(text, "flotilla_agent_engine_ttft_p95_seconds") else None

        text = await eventually(measured, what="TTFT quantiles")
        ttft_p95 = value(text, "flotilla_agent_engine_ttft_p95_seconds")
        assert ttft_p95 is not None and 0.02 <= ttft_p95 <= 5.0
        assert (value(text, "flotilla_agent_engine_requests_per_second") or 0) > 0
        assert value(text, "flotilla_agent_engine_e2e_latency_p50_seconds") is not None
        assert value(text, "flotilla_agent_engine_kv_cache_usage_ratio") is not None
        beat = agent.build_heartbeat()
        assert beat.status == "ready"
        assert beat.ttft_p95_ms is not None and beat.ttft_p95_ms >= 20
        assert beat.gpu_util is None  # no GPU here: nothing invented


async def test_tei_readiness_and_latency_come_from_info_embed_and_its_metrics(
        stack: Stack) -> None:
    sim = stack.sim("--ttft-ms", "20", kind="tei", model="org/embedder")
    await sim.proc.wait_http(sim.url + "/health")
    agent = agent_for("tei", sim.url, "org/embedder")
    async with asgi_client(create_app(agent.settings, agent=agent)) as client:
        await eventually(lambda: _ready(client), what="ready")
        async with httpx.AsyncClient(trust_env=False) as http:
            for _ in range(5):
                (await http.post(sim.url + "/embed", json={"inputs": "hi"})).raise_for_status()

        async def measured() -> str | None:
            text = (await client.get("/metrics")).text
            done = value(text, "flotilla_agent_engine_queue_depth") == 0.0
            return text if done and value(
                text, "flotilla_agent_engine_e2e_latency_p95_seconds") else None

        text = await eventually(measured, what="TEI latency quantiles")
        assert value(text, "flotilla_agent_engine_requests_per_second") is not None
        assert "flotilla_agent_engine_ttft" not in text  # embeddings have no first token
        assert "flotilla_agent_engine_kv_cache" not in text


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200
