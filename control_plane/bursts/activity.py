"""When each pool last saw traffic: the input of a burst's idle timeout.

Two sources, both already in the control plane:
- routers' demand reports (collection `routers`): `demand[pool].requests` is cumulative since the
  router started, so an increase between two reads (or requests held in the cold-start wait) is
  traffic now. A report seen for the first time counts only if its router started after this
  tracker did (an older router's history is not new traffic);
- the pool's workers' heartbeats: requests in flight or queued are traffic now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fleet.schemas import WorkerRecord


class PoolActivity:
    def __init__(self, started_at: float, *, report_ttl_s: float = 60.0) -> None:
        self.started_at = started_at
        self.report_ttl_s = report_ttl_s
        self._counters: dict[tuple[str, float, str], int] = {}
        self._last: dict[str, float] = {}

    def last_request_at(self, pool: str) -> float | None:
        return self._last.get(pool)

    def observe(self, reports: Mapping[str, Any], workers: Iterable[WorkerRecord],
                now: float) -> None:
        for router_id, doc in reports.items():
            if not isinstance(doc, dict):
                continue
            ts, started = doc.get("ts"), doc.get("started_at")
            demand = doc.get("demand")
            if not isinstance(ts, int | float) or not isinstance(started, int | float) \
                    or not isinstance(demand, dict) or now - ts > self.report_ttl_s:
                continue
            for pool, counts in demand.items():
                if not isinstance(counts, dict):
                    continue
                requests = counts.get("requests")
                waiting = counts.get("waiting")
                if isinstance(waiting, int) and waiting > 0:
                    self._last[pool] = now
                if not isinstance(requests, int):
                    continue
                key = (str(router_id), float(started), str(pool))
                previous = self._counters.get(key)
                self._counters[key] = requests
                if previous is None:
                    previous = 0 if started >= self.started_at else requests
                if requests > previous:
                    self._last[pool] = now
        for worker in workers:
            if worker.pool is not None and (worker.inflight > 0 or worker.queue_depth > 0):
                self._last[worker.pool] = now
        self._forget_gone(reports)

    def _forget_gone(self, reports: Mapping[str, Any]) -> None:
        live = set(reports)
        for key in [k for k in self._counters if k[0] not in live]:
            del self._counters[key]
