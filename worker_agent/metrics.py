"""The agent's Prometheus metrics (`flotilla_agent_*`), in a registry of its own per app.

Counters are ordinary prometheus_client counters. Everything that is a reading of the moment (the
agent's state, the engine's derived load signals, the GPUs) comes from a collector that asks the
agent for a snapshot at scrape time and emits a series only when its value is known: an engine
that exposes no KV-cache gauge, a quantile over a window without finished requests, or a machine
without NVML produce no series at all rather than a misleading zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker_agent.gpu import GpuReading
from worker_agent.signals import EngineSignals


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    engine: str
    model_id: str
    version: str
    ready: bool
    draining: bool
    enrolled: bool
    engine_healthy: bool
    signals: EngineSignals
    gpus: list[GpuReading] = field(default_factory=list)
    last_heartbeat_at: float | None = None
    drain_deadline: float | None = None


def _gauge(name: str, doc: str, value: float | None) -> Iterator[GaugeMetricFamily]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value)


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], AgentSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self._snapshot()
        info = GaugeMetricFamily("flotilla_agent_info", "The agent's engine, model and version.",
                                 labels=["engine", "model_id", "version"])
        info.add_metric([s.engine, s.model_id, s.version], 1)
        yield info
        yield from _gauge("flotilla_agent_ready", "1 when /readyz answers 200.", float(s.ready))
        yield from _gauge("flotilla_agent_draining", "1 while the worker drains.",
                          float(s.draining))
        yield from _gauge("flotilla_agent_enrolled", "1 while registered with the control plane.",
                          float(s.enrolled))
        yield from _gauge("flotilla_agent_engine_healthy", "1 when the engine's health check "
                          "last passed.", float(s.engine_healthy))
        yield from _gauge("flotilla_agent_last_heartbeat_timestamp_seconds",
                          "Unix time of the last heartbeat the control plane accepted.",
                          s.last_heartbeat_at)
        yield from _gauge("flotilla_agent_drain_deadline_timestamp_seconds",
                          "Unix time the machine goes away (Spot notice), while draining.",
                          s.drain_deadline)
        yield from self._engine(s.signals)
        yield from self._gpus(s.gpus)

    def _engine(self, sig: EngineSignals) -> Iterator[GaugeMetricFamily]:
        yield from _gauge("flotilla_agent_engine_queue_depth",
                          "Requests the engine holds (running + waiting).", sig.queue_depth)
        yield from _gauge("flotilla_agent_engine_requests_running",
                          "Requests the engine is computing.", sig.running)
        yield from _gauge("flotilla_agent_engine_requests_waiting",
                          "Requests queued in the engine.", sig.waiting)
        yield from _gauge("flotilla_agent_engine_kv_cache_usage_ratio",
                          "KV-cache usage of the engine, 0..1.", sig.kv_cache_usage)
        yield from _gauge("flotilla_agent_engine_requests_per_second",
                          "Requests finished per second over the signals window.",
                          sig.requests_per_s)
        yield from _gauge("flotilla_agent_engine_signals_window_seconds",
                          "Span of the window the rate and quantiles cover.", sig.window_s)
        # Separate gauges per quantile: a `quantile` label is reserved for summaries (promtool).
        for name, what, value in (
            ("flotilla_agent_engine_ttft_p50_seconds", "Median time to first token",
             sig.ttft_p50_s),
            ("flotilla_agent_engine_ttft_p95_seconds", "95th percentile time to first token",
             sig.ttft_p95_s),
            ("flotilla_agent_engine_e2e_latency_p50_seconds", "Median request latency",
             sig.e2e_p50_s),
            ("flotilla_agent_engine_e2e_latency_p95_seconds", "95th percentile request latency",
             sig.e2e_p95_s),
        ):
            yield from _gauge(name, f"{what} over the signals window.", value)

    def _gpus(self, gpus: list[GpuReading]) -> Iterator[GaugeMetricFamily]:
        if not gpus:
            return
        util = GaugeMetricFamily("flotilla_agent_gpu_utilization_ratio",
                                 "GPU busy fraction over NVML's last sample period, 0..1.",
                                 labels=["gpu"])
        used = GaugeMetricFamily("flotilla_agent_gpu_memory_used_bytes", "GPU memory in use.",
                                 labels=["gpu"])
        total = GaugeMetricFamily("flotilla_agent_gpu_memory_total_bytes", "GPU memory size.",
                                  labels=["gpu"])
        for reading in gpus:
            label = [str(reading.index)]
            util.add_metric(label, reading.utilization)
            used.add_metric(label, reading.memory_used_bytes)
            total.add_metric(label, reading.memory_total_bytes)
        yield util
        yield used
        yield total


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.control_plane_calls = Counter(
            "flotilla_agent_control_plane_calls_total",
            "Calls to the control plane by call and outcome.",
            ["call", "outcome"], registry=self.registry)
        self.engine_polls = Counter(
            "flotilla_agent_engine_polls_total",
            "Engine health and metrics polls by outcome.", ["outcome"], registry=self.registry)
        self.engine_restarts = Counter(
            "flotilla_agent_engine_restarts_total",
            "Times the supervised engine died and was started again.", registry=self.registry)
        self.spot_notices = Counter(
            "flotilla_agent_spot_notices_total",
            "Instance metadata notices seen, by kind.", ["kind"], registry=self.registry)
        self.drains = Counter(
            "flotilla_agent_drains_total", "Drains started, by reason.", ["reason"],
            registry=self.registry)
        for call, outcome in (("register", "ok"), ("register", "bootstrapped"),
                              ("heartbeat", "ok"), ("deregister", "ok")):
            self.control_plane_calls.labels(call, outcome)

    def count_control_plane_call(self, call: str, outcome: str) -> None:
        self.control_plane_calls.labels(call, outcome).inc()

    def watch(self, snapshot: Callable[[], AgentSnapshot]) -> None:
        """Export the agent's live state, read from `snapshot()` at every scrape."""
        self.registry.register(_SnapshotCollector(snapshot))
