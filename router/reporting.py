"""The replica's periodic sync with the fleet store (one owned loop, every `report_period_s`).

Each cycle:
  1. publish this replica's `RouterReport` (in-flight counts per worker, breaker states, pool
     demand) into collection `routers` under its router id;
  2. read every replica's report and hand the others' in-flight counts to the `InflightBook`
     (reports that have not changed for `peer_stale_s` by *our* clock are ignored: a dead replica
     stops counting, and clock skew between machines does not matter);
  3. send this replica's rate-limit and usage counts and learn the global totals (limits.py);
  4. refresh the per-worker gauges.

If the store cannot be read for `peer_stale_s`, the other replicas' counts are unknown:
`InflightBook.shared` turns False and least-outstanding falls back to queue depth (balancing.py).
At shutdown the replica deletes its report so the others stop counting its requests at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from fleet.schemas import RouterReport
from fleet.store import ROUTERS, FleetStore, StoreUnavailable
from router.breaker import BreakerBoard
from router.demand import DemandBook
from router.inflight import InflightBook
from router.limits import RateLimiter
from router.metrics import RouterMetrics
from router.snapshot import SnapshotKeeper

log = logging.getLogger("router.reporting")


class Reporter:
    def __init__(self, store: FleetStore, *, router_id: str, period_s: float, peer_stale_s: float,
                 store_timeout_s: float, inflight: InflightBook, breakers: BreakerBoard,
                 demand: DemandBook, limiter: RateLimiter, keeper: SnapshotKeeper,
                 metrics: RouterMetrics, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.router_id = router_id
        self._period = period_s
        self._stale = peer_stale_s
        self._timeout = store_timeout_s
        self._inflight = inflight
        self._breakers = breakers
        self._demand = demand
        self._limiter = limiter
        self._keeper = keeper
        self._metrics = metrics
        self._clock = clock
        self._wall = wall_clock
        self.started_at = wall_clock()
        self._peers_read_at: float | None = None
        # peer id -> (its report's ts, our clock when that ts last changed)
        self._seen: dict[str, tuple[float, float]] = {}
        self.peers: dict[str, dict[str, Any]] = {}  # fresh peers' last reports (for /readyz)
        self._stopping = asyncio.Event()

    def report(self) -> RouterReport:
        return RouterReport(router_id=self.router_id, ts=self._wall(), started_at=self.started_at,
                            inflight=self._inflight.local_counts(),
                            circuits=self._breakers.states(), demand=self._demand.snapshot())

    async def cycle(self) -> None:
        now = self._clock()
        await self._step("publish", self._store.put_doc(ROUTERS, self.router_id, self.report()))
        docs = await self._step("read_reports", self._store.get_docs(ROUTERS))
        if docs is not None:
            self._take_peers(docs, now)
        elif self._peers_read_at is None or now - self._peers_read_at > self._stale:
            self._inflight.shared = False
        await self._step("sync_counts", self._limiter.sync(self._store))
        self._update_gauges()

    async def _step(self, operation: str, call: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (StoreUnavailable, TimeoutError) as exc:
            self._metrics.store_errors.labels(operation).inc()
            log.debug("store %s failed: %s", operation, exc)
            return None

    def _take_peers(self, docs: dict[str, dict[str, Any]], now: float) -> None:
        counts: dict[str, int] = {}
        fresh: dict[str, dict[str, Any]] = {}
        for peer_id, doc in docs.items():
            if peer_id == self.router_id or not isinstance(doc, dict):
                continue
            ts = doc.get("ts")
            if not isinstance(ts, int | float):
                continue
            seen = self._seen.get(peer_id)
            if seen is None or seen[0] != ts:
                # A report seen for the first time counts from now: if it is old, it will go
                # stale after peer_stale_s without changing.
                seen = self._seen[peer_id] = (ts, now)
            if now - seen[1] > self._stale:
                continue
            fresh[peer_id] = doc
            inflight = doc.get("inflight")
            if isinstance(inflight, dict):
                for worker, count in inflight.items():
                    if isinstance(count, int) and count > 0:
                        counts[worker] = counts.get(worker, 0) + count
        for peer_id in [p for p in self._seen if p not in docs]:
            del self._seen[peer_id]
        self._inflight.set_peers(counts)
        self._inflight.shared = True
        self._peers_read_at = now
        self.peers = fresh

    def _update_gauges(self) -> None:
        workers = self._keeper.snapshot().worker_ids()
        local = self._inflight.local_counts()
        peers = self._inflight.peer_counts()
        outstanding = {w: local.get(w, 0) + peers.get(w, 0) for w in workers}
        self._metrics.update_workers(workers, local, outstanding, self._breakers.states(),
                                     self._breakers.success_rates())

    async def run(self) -> None:
        """The owned loop: one cycle per period, whatever happens in a cycle, until `stop()`."""
        while not self._stopping.is_set():
            started = self._clock()
            try:
                await self.cycle()
            except Exception:
                log.exception("report cycle failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self._period - (self._clock() - started))):
                    await self._stopping.wait()

    def stop(self) -> None:
        """Let the loop finish its cycle and end (a cancelled write could land after the
        withdrawal and resurrect the report)."""
        self._stopping.set()

    async def withdraw(self) -> None:
        """Flush the last counts and remove this replica's report (shutdown); bounded."""
        with contextlib.suppress(Exception):
            await self._step("sync_counts", self._limiter.sync(self._store))
        await self._step("withdraw", self._store.delete_doc(ROUTERS, self.router_id))
