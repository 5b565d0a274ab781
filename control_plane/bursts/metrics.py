"""Burst gauges, computed at scrape time from the manager's memory (never out of step with it).

    flotilla_burst_state{burst,pool,state}  1 for the burst's current state, 0 for the others
    flotilla_burst_cost_usd{burst}          the pool's spend since the burst started

Running bursts and the 20 most recent ended ones are exported, so the label sets stay bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.bursts.records import STATES


class BurstFacts(Protocol):
    def gauges(self) -> list[tuple[str, str, str, float]]: ...


class BurstGauges(Collector):
    def __init__(self, facts: BurstFacts) -> None:
        self.facts = facts

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("flotilla_burst_state",
                                  "1 for the burst's current state (0 for the others)",
                                  labels=["burst", "pool", "state"])
        cost = GaugeMetricFamily("flotilla_burst_cost_usd",
                                 "Spend of the burst's pool since the burst started (USD)",
                                 labels=["burst"])
        for burst, pool, current, spent in self.facts.gauges():
            for name in STATES:
                state.add_metric([burst, pool, name], 1.0 if name == current else 0.0)
            cost.add_metric([burst], spent)
        yield state
        yield cost

    def describe(self) -> Iterable[Metric]:
        return []
