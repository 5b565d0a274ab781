"""Prometheus metrics of capacity (names agreed in notes/INTERFACES.md, read by ops' rules).

Counters are updated where things happen; the per-pool gauges and the cost counter are computed
at scrape time from the manager's memory (`PoolGauges`), so they cannot disagree with it.

    flotilla_pool_desired_replicas{pool}        flotilla_pool_ready_replicas{pool}
    flotilla_pool_starting_replicas{pool}       flotilla_pool_queue_depth{pool}
    flotilla_pool_ttft_p95_seconds{pool}        flotilla_pool_ttft_slo_seconds{pool}
    flotilla_pool_cost_per_hour_usd{pool}       flotilla_pool_max_cost_per_hour_usd{pool}
    flotilla_cost_usd_total                     flotilla_route_ready_pools{model}
    flotilla_spot_interruptions_total{pool,instance_type}
    flotilla_autoscaler_decisions_total{pool,direction}
    flotilla_launch_failures_total{pool,instance_type,reason}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class CapacityFacts(Protocol):
    def gauge_rows(self) -> list[dict[str, Any]]: ...

    def route_ready_pools(self) -> dict[str, int]: ...

    def total_spent_usd(self) -> float: ...


class CapacityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.interruptions = Counter(
            "flotilla_spot_interruptions", "Spot interruption notices and rebalance "
            "recommendations heard from workers", ["pool", "instance_type"], registry=registry)
        self.decisions = Counter(
            "flotilla_autoscaler_decisions", "Autoscaler decisions by direction",
            ["pool", "direction"], registry=registry)
        self.launch_failures = Counter(
            "flotilla_launch_failures", "Failed launch attempts by instance type and reason",
            ["pool", "instance_type", "reason"], registry=registry)

    def watch(self, facts: CapacityFacts) -> None:
        self.registry.register(PoolGauges(facts))


_GAUGES = (
    ("desired", "flotilla_pool_desired_replicas", "Replicas the autoscaler wants"),
    ("ready", "flotilla_pool_ready_replicas", "Ready replicas"),
    ("starting", "flotilla_pool_starting_replicas", "Replicas launching or starting"),
    ("queue_depth", "flotilla_pool_queue_depth", "Smoothed queue depth (running + waiting)"),
    ("ttft_p95_seconds", "flotilla_pool_ttft_p95_seconds", "Smoothed TTFT p95"),
    ("ttft_slo_seconds", "flotilla_pool_ttft_slo_seconds", "The pool's TTFT p95 SLO"),
    ("cost_per_hour_usd", "flotilla_pool_cost_per_hour_usd", "$/h of the pool's instances"),
    ("max_cost_per_hour_usd", "flotilla_pool_max_cost_per_hour_usd",
     "The pool's spending cap (max_price_per_hour x max_replicas)"),
)


class PoolGauges(Collector):
    def __init__(self, facts: CapacityFacts) -> None:
        self.facts = facts

    def collect(self) -> Iterator[Metric]:
        rows = self.facts.gauge_rows()
        for key, name, text in _GAUGES:
            family = GaugeMetricFamily(name, text, labels=["pool"])
            for row in rows:
                if row.get(key) is not None:
                    family.add_metric([row["pool"]], float(row[key]))
            yield family
        routes = GaugeMetricFamily("flotilla_route_ready_pools",
                                   "Pool targets with a ready replica per routed model",
                                   labels=["model"])
        for model, count in sorted(self.facts.route_ready_pools().items()):
            routes.add_metric([model], count)
        yield routes
        yield CounterMetricFamily("flotilla_cost_usd", "Estimated spend on instances so far",
                                  value=self.facts.total_spent_usd())

    def describe(self) -> Iterable[Metric]:
        return []
