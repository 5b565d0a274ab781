"""The per-pool signal snapshot the autoscaler decides on, built from what the store holds.

    instances (provider docs) ─┐
    worker records ────────────┼─► SignalTracker.observe(pool, ...) ─► PoolSignals ─► Autoscaler
    router reports (demand) ───┘        (keeps smoothing windows, demand counters, idle clock)

Replica states, from facts:

    booting    an instance was launched, no worker registered for it yet
    starting   its worker registered but is not ready (engine loading, probe not passed)
    ready      `fleet.schemas.readiness` says ready
    draining   the worker is draining (scale-down, Spot notice, SIGTERM) or a drain was asked for

`live` replicas (booting + starting + ready) are what the target is compared with: a draining
replica is already on its way out, so a Spot interruption lowers `live` and the policy replaces it.

Smoothed signals (see windows.py): total queue depth (running + waiting) and mean GPU utilisation of
ready replicas by EWMA; latency p95 (TTFT, or end-to-end for engines without TTFT, e.g. embeddings)
as the median of recent readings, each reading the request-rate-weighted mean over ready replicas.

Demand from routers: `PoolDemand` counters are cumulative per router process, so the tracker keeps
the last value per (router, start time, key) and reports increments; a router seen for the first
time contributes no increment (its history predates us), but its `last_cold_at` and `waiting` count.
A key that first appears in the report of a router already seen for this pool (a router lists a
pool only once it has routed a request to it) is new traffic from zero: otherwise a pool's first
requests would not count, and a pool idle since creation would scale to zero under them.

Idle clock: the last time the pool showed any traffic (new requests, queue or in-flight work, cold
requests, waiting requests, a reported request rate). Before any traffic, the clock starts when
the tracker first saw the pool, so a pool nobody uses still scales to zero after
`scale_to_zero_after_s`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from control_plane.autoscaling.windows import SampleWindow
from control_plane.providers.base import Instance
from fleet.catalog import Pool
from fleet.schemas import RouterReport, WorkerRecord, is_expired, readiness

ReplicaState = Literal["booting", "starting", "ready", "draining"]
INTERRUPTION_REASONS = frozenset({"spot_interruption", "rebalance"})


@dataclass(frozen=True, slots=True)
class Replica:
    instance_id: str
    state: ReplicaState
    worker_id: str | None = None
    instance_type: str | None = None
    zone: str | None = None
    price_per_hour: float | None = None
    launched_at: float | None = None
    queue_depth: int = 0
    inflight: int = 0
    interrupted: bool = False  # draining because of a Spot notice or rebalance recommendation
    managed: bool = True  # launched by a capacity provider (False: a worker enrolled by hand)

    @property
    def live(self) -> bool:
        return self.state != "draining"


@dataclass(frozen=True, slots=True)
class PoolSignals:
    pool: str
    spec: Pool
    at: float
    replicas: tuple[Replica, ...] = ()
    queue_depth: float | None = None  # smoothed total over live replicas
    latency_p95_ms: float | None = None  # smoothed
    gpu_util: float | None = None  # smoothed mean over ready replicas, 0..1
    cold_requests: int = 0  # requests that found the pool cold since the previous snapshot
    cold_recent: bool = False  # a router saw the pool cold within `cold_window_s`
    waiting: int = 0  # requests held right now in routers' cold-start wait
    idle_s: float = 0.0  # seconds without any traffic
    next_price_per_hour: float | None = None  # what one more replica would cost ($/h)
    budget_remaining_usd: float | None = None  # a burst's budget left, when one applies
    arrival_rate: float | None = None  # requests/s routers sent the pool (smoothed)
    served_per_replica: float | None = None  # requests/s a busy ready replica completes (mean)

    @property
    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.live and r.managed]

    @property
    def ready(self) -> list[Replica]:
        return [r for r in self.replicas if r.state == "ready"]

    @property
    def unmanaged_ready(self) -> int:
        return sum(1 for r in self.replicas if r.state == "ready" and not r.managed)

    @property
    def interrupted(self) -> int:
        return sum(1 for r in self.replicas if r.interrupted)

    @property
    def spend_per_hour(self) -> float:
        """$/h of the live managed replicas whose price is known."""
        return sum(r.price_per_hour or 0.0 for r in self.live)

    @property
    def starting(self) -> int:
        """Live managed replicas not serving yet (booting or starting): capacity on its way."""
        return sum(1 for r in self.live if r.state != "ready")

    @property
    def cold_demand(self) -> bool:
        return self.waiting > 0 or self.cold_requests > 0 or self.cold_recent


@dataclass
class _PoolHistory:
    queue: SampleWindow
    latency: SampleWindow
    gpu: SampleWindow
    arrivals: SampleWindow
    first_seen: float
    last_observed: float | None = None
    last_activity: float | None = None
    counters: dict[tuple[str, float, str], tuple[int, int]] = field(default_factory=dict)
    routers: set[tuple[str, float]] = field(default_factory=set)  # in the last fresh reports


class SignalTracker:
    """Builds `PoolSignals` per pool, keeping the windows and counters between snapshots."""

    def __init__(self, *, window_s: float = 60.0, half_life_s: float = 15.0,
                 latency_percentile: float = 50.0, cold_window_s: float = 30.0,
                 report_ttl_s: float = 60.0, heartbeat_interval_s: float = 10.0) -> None:
        self.window_s = window_s
        self.half_life_s = half_life_s
        self.latency_percentile = latency_percentile
        self.cold_window_s = cold_window_s
        self.report_ttl_s = report_ttl_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._pools: dict[str, _PoolHistory] = {}

    def forget(self, pool: str) -> None:
        self._pools.pop(pool, None)

    def observe(
        self,
        pool: str,
        spec: Pool,
        *,
        workers: Iterable[WorkerRecord],
        instances: Iterable[Instance],
        reports: Iterable[RouterReport],
        now: float,
        next_price_per_hour: float | None = None,
        budget_remaining_usd: float | None = None,
    ) -> PoolSignals:
        history = self._pools.get(pool)
        if history is None:
            history = self._pools[pool] = _PoolHistory(
                SampleWindow(window_s=self.window_s, half_life_s=self.half_life_s),
                SampleWindow(window_s=self.window_s, half_life_s=self.half_life_s),
                SampleWindow(window_s=self.window_s, half_life_s=self.half_life_s),
                SampleWindow(window_s=self.window_s, half_life_s=self.half_life_s),
                first_seen=now)
        members = [w for w in workers if _belongs(w, pool, spec)
                   and not is_expired(w, now, heartbeat_interval_s=self.heartbeat_interval_s)]
        replicas = self._replicas(pool, members, instances, now)
        serving = [w for w in members if _worker_state(w, now, self.heartbeat_interval_s)
                   != "draining"]
        ready = [w for w in members if _worker_state(w, now, self.heartbeat_interval_s)
                 == "ready"]

        if serving:
            history.queue.add(now, sum(w.queue_depth for w in serving))
        latency = _weighted_latency(ready)
        if latency is not None:
            history.latency.add(now, latency)
        utils = [w.gpu_util for w in ready if w.gpu_util is not None]
        if utils:
            history.gpu.add(now, sum(utils) / len(utils))

        cold, requests, waiting, last_cold, counted = self._demand(
            history, pool, spec, reports, now)
        # Arrival rate only from increments of counters already known: a router seen for the
        # first time contributes nothing yet, and counting that as zero would understate demand.
        if counted and history.last_observed is not None and now > history.last_observed:
            history.arrivals.add(now, requests / (now - history.last_observed))
        history.last_observed = now
        served = [w.requests_per_s for w in ready
                  if w.requests_per_s is not None and w.requests_per_s > 0 and w.queue_depth > 0]
        cold_recent = last_cold is not None and now - last_cold <= self.cold_window_s
        busy = (requests > 0 or cold > 0 or waiting > 0 or cold_recent
                or any(w.queue_depth > 0 or w.inflight > 0 or (w.requests_per_s or 0) > 0
                       for w in members))
        if busy:
            history.last_activity = now
        idle_since = history.last_activity if history.last_activity is not None \
            else history.first_seen
        return PoolSignals(
            pool=pool, spec=spec, at=now, replicas=tuple(replicas),
            queue_depth=history.queue.ewma(now) if serving else None,
            latency_p95_ms=history.latency.percentile(self.latency_percentile, now)
            if ready else None,
            gpu_util=history.gpu.ewma(now) if ready else None,
            cold_requests=cold, cold_recent=cold_recent, waiting=waiting,
            idle_s=max(0.0, now - idle_since),
            next_price_per_hour=next_price_per_hour,
            budget_remaining_usd=budget_remaining_usd,
            arrival_rate=history.arrivals.ewma(now),
            served_per_replica=sum(served) / len(served) if served else None)

    def _replicas(self, pool: str, members: Sequence[WorkerRecord],
                  instances: Iterable[Instance], now: float) -> list[Replica]:
        by_instance = {w.instance_id: w for w in members}
        replicas = []
        seen = set()
        for inst in instances:
            if inst.pool != pool:
                continue
            seen.add(inst.instance_id)
            worker = by_instance.get(inst.instance_id)
            replicas.append(_replica(inst.instance_id, worker, now, self.heartbeat_interval_s,
                                     inst.instance_type, inst.zone, inst.price_per_hour,
                                     inst.launched_at, managed=True))
        for worker in members:
            if worker.instance_id in seen:
                continue
            replicas.append(_replica(worker.instance_id, worker, now, self.heartbeat_interval_s,
                                     worker.instance_type, worker.zone, None,
                                     worker.registered_at,
                                     managed=worker.provider != "static"))
        return replicas

    def _demand(self, history: _PoolHistory, pool: str, spec: Pool,
                reports: Iterable[RouterReport], now: float,
                ) -> tuple[int, int, int, float | None, bool]:
        cold = requests = waiting = 0
        counted = False
        last_cold: float | None = None
        keys = {pool, spec.model_id}
        routers: set[tuple[str, float]] = set()
        for report in reports:
            if now - report.ts > self.report_ttl_s:
                continue
            router = (report.router_id, report.started_at)
            routers.add(router)
            for key in keys:
                demand = report.demand.get(key)
                if demand is None:
                    continue
                counter = (*router, key)
                previous = history.counters.get(counter)
                if previous is None and router in history.routers:
                    previous = (0, 0)  # the key is new since this router's last report
                history.counters[counter] = (demand.requests, demand.cold_requests)
                if previous is not None:
                    counted = True
                    requests += max(0, demand.requests - previous[0])
                    cold += max(0, demand.cold_requests - previous[1])
                waiting += demand.waiting
                if demand.last_cold_at is not None:
                    last_cold = max(last_cold or demand.last_cold_at, demand.last_cold_at)
        history.routers = routers
        return cold, requests, waiting, last_cold, counted


def _belongs(worker: WorkerRecord, pool: str, spec: Pool) -> bool:
    if worker.pool is not None:
        return worker.pool == pool
    return worker.model_id == spec.model_id


def _worker_state(worker: WorkerRecord, now: float, interval: float) -> ReplicaState:
    if worker.drain_requested_at is not None or worker.status == "draining":
        return "draining"
    ready, _why = readiness(worker, now, heartbeat_interval_s=interval)
    return "ready" if ready else "starting"


def _replica(instance_id: str, worker: WorkerRecord | None, now: float, interval: float,
             instance_type: str | None, zone: str | None, price: float | None,
             launched_at: float | None, *, managed: bool) -> Replica:
    if worker is None:
        return Replica(instance_id, "booting", instance_type=instance_type, zone=zone,
                       price_per_hour=price, launched_at=launched_at, managed=managed)
    state = _worker_state(worker, now, interval)
    return Replica(
        instance_id, state, worker_id=worker.worker_id, instance_type=instance_type,
        zone=zone, price_per_hour=price, launched_at=launched_at,
        queue_depth=worker.queue_depth, inflight=worker.inflight,
        interrupted=state == "draining" and worker.drain_reason in INTERRUPTION_REASONS,
        managed=managed)


def _weighted_latency(ready: Sequence[WorkerRecord]) -> float | None:
    """Request-rate-weighted mean of the replicas' p95 (TTFT, else end-to-end)."""
    pairs = []
    for worker in ready:
        value = worker.ttft_p95_ms if worker.ttft_p95_ms is not None else worker.e2e_p95_ms
        if value is not None:
            pairs.append((value, worker.requests_per_s or 0.0))
    if not pairs:
        return None
    total = sum(weight for _v, weight in pairs)
    if total <= 0:
        return sum(v for v, _w in pairs) / len(pairs)
    return sum(v * w for v, w in pairs) / total
