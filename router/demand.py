"""Demand per pool as this router sees it: how the control plane learns to scale a pool from zero.

A request whose route reaches a pool target counts in that pool's `requests`; if the pool had no
ready worker at that moment it also counts in `cold_requests` (and `last_cold_at`); while it is
held in the cold-start wait it counts in `waiting`. Counts are cumulative since this router
started (the control plane takes differences between reports); they are published in the
replica's `RouterReport.demand`. Unrouted models served by their workers are keyed `model:<id>`.
"""

from __future__ import annotations

import dataclasses

from fleet.schemas import PoolDemand


@dataclasses.dataclass(slots=True)
class _Demand:
    requests: int = 0
    cold_requests: int = 0
    waiting: int = 0
    last_cold_at: float | None = None


class DemandBook:
    def __init__(self) -> None:
        self._pools: dict[str, _Demand] = {}

    def _get(self, pool: str) -> _Demand:
        demand = self._pools.get(pool)
        if demand is None:
            demand = self._pools[pool] = _Demand()
        return demand

    def request(self, pool: str, *, cold: bool, now: float) -> None:
        demand = self._get(pool)
        demand.requests += 1
        if cold:
            demand.cold_requests += 1
            demand.last_cold_at = now

    def wait_started(self, pool: str) -> None:
        self._get(pool).waiting += 1

    def wait_ended(self, pool: str) -> None:
        self._get(pool).waiting -= 1

    def snapshot(self) -> dict[str, PoolDemand]:
        return {pool: PoolDemand(d.requests, d.cold_requests, d.waiting, d.last_cold_at)
                for pool, d in self._pools.items()}
