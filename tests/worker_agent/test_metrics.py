"""The agent's /metrics text: promtool-clean, and series only for values that are known."""

from __future__ import annotations

import subprocess

from prometheus_client import generate_latest

from worker_agent.gpu import GpuReading
from worker_agent.metrics import AgentMetrics, AgentSnapshot
from worker_agent.signals import EngineSignals


def exposition(snapshot: AgentSnapshot) -> str:
    metrics = AgentMetrics()
    metrics.watch(lambda: snapshot)
    metrics.count_control_plane_call("heartbeat", "unreachable")
    metrics.engine_restarts.inc()
    return generate_latest(metrics.registry).decode()


FULL = AgentSnapshot(
    engine="vllm", model_id="org/m", version="0.1.0", ready=True, draining=False, enrolled=True,
    engine_healthy=True,
    signals=EngineSignals(running=2, waiting=3, kv_cache_usage=0.4, requests_per_s=1.5,
                          ttft_p50_s=0.05, ttft_p95_s=0.2, e2e_p50_s=1.0, e2e_p95_s=3.0,
                          window_s=60),
    gpus=[GpuReading(0, 0.75, 10 * 2**30, 80 * 2**30), GpuReading(1, 0.5, 2**30, 80 * 2**30)],
    last_heartbeat_at=1_700_000_000.0, drain_deadline=None)

EMPTY = AgentSnapshot(engine="tei", model_id="org/e", version="0.1.0", ready=False,
                      draining=False, enrolled=False, engine_healthy=False,
                      signals=EngineSignals())


def test_every_signal_is_exported_under_flotilla_agent_names(promtool: str) -> None:
    text = exposition(FULL)
    for line in (
        'flotilla_agent_engine_queue_depth 5.0',
        'flotilla_agent_engine_requests_running 2.0',
        'flotilla_agent_engine_requests_waiting 3.0',
        'flotilla_agent_engine_kv_cache_usage_ratio 0.4',
        'flotilla_agent_engine_requests_per_second 1.5',
        'flotilla_agent_engine_ttft_p95_seconds 0.2',
        'flotilla_agent_engine_ttft_p50_seconds 0.05',
        'flotilla_agent_engine_e2e_latency_p50_seconds 1.0',
        'flotilla_agent_engine_e2e_latency_p95_seconds 3.0',
        'flotilla_agent_gpu_utilization_ratio{gpu="0"} 0.75',
        'flotilla_agent_gpu_memory_used_bytes{gpu="1"} 1.073741824e+09',
        'flotilla_agent_ready 1.0',
        'flotilla_agent_engine_restarts_total 1.0',
        'flotilla_agent_control_plane_calls_total{call="heartbeat",outcome="unreachable"} 1.0',
    ):
        assert line in text, line
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_unknown_values_and_absent_gpus_produce_no_series(promtool: str) -> None:
    text = exposition(EMPTY)
    for absent in ("flotilla_agent_gpu_", "flotilla_agent_engine_queue_depth",
                   "flotilla_agent_engine_ttft_p", "flotilla_agent_engine_kv_cache",
                   "flotilla_agent_last_heartbeat", "flotilla_agent_drain_deadline"):
        assert absent not in text, absent
    assert "flotilla_agent_ready 0.0" in text
    assert 'flotilla_agent_info{engine="tei",model_id="org/e",version="0.1.0"} 1.0' in text
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
