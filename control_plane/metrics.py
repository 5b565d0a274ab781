"""Prometheus metrics of the control plane, in a registry the app is given (tests stay isolated,
`flotilla up` runs two services in one process).

Counters and histograms are updated where things happen; the worker gauges are computed at scrape
time from the registry's memory (`WorkerGauges`), so they can never disagree with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

P = "flotilla_control_plane"

LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
PROBE_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)


class WorkerFacts(Protocol):
    """What the gauges need from the worker registry."""

    def status_counts(self) -> dict[tuple[str, bool], int]: ...

    def oldest_heartbeat(self) -> float | None: ...


class ControlPlaneMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.registrations = Counter(
            f"{P}_registrations", "Worker registrations by result", ["result"],
            registry=registry)
        self.heartbeats = Counter(
            f"{P}_heartbeats", "Worker heartbeats by result", ["result"], registry=registry)
        self.deregistrations = Counter(
            f"{P}_deregistrations", "Worker deregistrations by result", ["result"],
            registry=registry)
        self.heartbeat_lag = Histogram(
            f"{P}_heartbeat_lag_seconds",
            "How late a heartbeat arrived after the expected interval (0 when on time)",
            buckets=LAG_BUCKETS, registry=registry)
        self.probes = Counter(
            f"{P}_probes", "Readiness probes of worker agents by result", ["result"],
            registry=registry)
        self.probe_failures = Counter(
            f"{P}_probe_failures", "Failed readiness probes by reason", ["reason"],
            registry=registry)
        self.probe_duration = Histogram(
            f"{P}_probe_duration_seconds", "Duration of readiness probes",
            buckets=PROBE_BUCKETS, registry=registry)
        self.store_errors = Counter(
            f"{P}_store_errors", "Fleet-store operations that failed", ["operation"],
            registry=registry)
        self.store_reseeds = Counter(
            f"{P}_store_reseeds", "Times the store lost its data and was rewritten from memory",
            registry=registry)
        self.store_write_batch = Histogram(
            f"{P}_store_write_batch_workers", "Worker records written per store round trip",
            buckets=BATCH_BUCKETS, registry=registry)
        self.events = Counter(
            f"{P}_events", "Timeline events emitted by kind", ["kind"], registry=registry)
        self.admin_requests = Counter(
            f"{P}_admin_requests", "Admin API requests by result", ["result"],
            registry=registry)

    def watch_workers(self, facts: WorkerFacts, clock: Callable[[], float] = time.time) -> None:
        self.registry.register(WorkerGauges(facts, clock))


class WorkerGauges(Collector):
    def __init__(self, facts: WorkerFacts, clock: Callable[[], float]) -> None:
        self.facts = facts
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        workers = GaugeMetricFamily(f"{P}_workers", "Enrolled workers by reported status and "
                                    "readiness", labels=["status", "ready"])
        for (status, ready), count in sorted(self.facts.status_counts().items()):
            workers.add_metric([status, "true" if ready else "false"], count)
        yield workers
        oldest = self.facts.oldest_heartbeat()
        age = GaugeMetricFamily(f"{P}_oldest_heartbeat_age_seconds",
                                "Time since the least recent heartbeat of any enrolled worker")
        age.add_metric([], 0.0 if oldest is None else max(0.0, self.clock() - oldest))
        yield age

    def describe(self) -> Iterable[Metric]:
        return []
