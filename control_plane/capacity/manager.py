"""The capacity manager (`ControlPlane.capacity`): one autoscaler loop over every pool.

Each tick (every `autoscale_interval_s`, `autoscale_interval_at_zero_s` while a pool has no
replica, and at once when a Spot notice arrives or a pool changes):

    1. read routers' demand reports (cold pools) from the store
    2. executor.progress: note facts on instances, terminate what finished draining
    3. per pool: signals -> Autoscaler.decide -> event + metrics -> launch / drain-first release
       (a pool with a launch in flight is skipped until it returns: no double launches)
    4. instances of deleted pools, or of a pool that moved provider, are released (drain first)

Hooks for bursts (notes/INTERFACES.md): `set_floor(pool, owner, replicas)` /
`clear_floor(pool, owner)` - the autoscaler never goes below the largest floor (still within
max_replicas and the spending cap); floors live in memory, their owners restore them after a
restart. `pool_view(pool)` - what the pool holds right now.

The spending cap: a pool's `max_price_per_hour` is the most one instance may cost (types above
it are skipped) and the pool's cap is that times `max_replicas`; the autoscaler stops scaling up
at the cap and sheds replicas above it when prices rise (the cap passed to the policy is the
pool cap).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from control_plane.autoscaling import (
    Autoscaler,
    AutoscalerConfig,
    PoolSignals,
    ScaleDecision,
    SignalTracker,
    StabilizationConfig,
    choose_victims,
)
from control_plane.autoscaling.signals import INTERRUPTION_REASONS
from control_plane.capacity.book import InstanceBook
from control_plane.capacity.costs import CostLedger
from control_plane.capacity.executor import Executor
from control_plane.capacity.gauges import CapacityMetrics
from control_plane.capacity.providers import build_providers
from control_plane.capacity.reports import read_reports
from control_plane.capacity.views import PoolView, instance_view
from control_plane.catalog import FleetCatalog
from control_plane.events import EventLog
from control_plane.loops import raise_if_cancelling
from control_plane.providers.base import CapacityProvider, Instance
from control_plane.providers.interruptions import DemotionTracker
from control_plane.registry import WorkerRegistry
from control_plane.settings import ControlPlaneSettings
from control_plane.tokens import WorkerTokens
from fleet.catalog import Pool, PoolTarget
from fleet.schemas import RouterReport, WorkerRecord
from fleet.store import FleetStore, FleetStoreError

log = logging.getLogger("flotilla.capacity")


@dataclass
class PoolState:
    floors: dict[str, int] = field(default_factory=dict)
    signals: PoolSignals | None = None
    decision: ScaleDecision | None = None
    last_change: ScaleDecision | None = None  # the last decision that was not a hold
    desired: int | None = None
    launch: asyncio.Task[None] | None = None
    retry_at: float = 0.0
    waiting_capacity: bool = False
    last_error: str | None = None
    reported_hold: str | None = None  # what the last recorded hold was (not repeated)

    def launching(self) -> bool:
        return self.launch is not None and not self.launch.done()


class CapacityManager:
    def __init__(self, settings: ControlPlaneSettings, store: FleetStore, *,
                 registry: WorkerRegistry, catalog: FleetCatalog, events: EventLog,
                 tokens: WorkerTokens, metrics: CapacityMetrics, clock: Callable[[], float],
                 providers: Mapping[str, CapacityProvider] | None = None,
                 demotions: DemotionTracker | None = None) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.catalog = catalog
        self.events = events
        self.clock = clock
        self.metrics = metrics
        self.demotions = demotions or DemotionTracker()
        self.providers = dict(providers) if providers is not None else build_providers(
            settings, self.demotions)
        self.book = InstanceBook(store)
        self.costs = CostLedger(store, clock)
        self.tracker = SignalTracker(heartbeat_interval_s=settings.heartbeat_interval_s,
                                     cold_window_s=settings.cold_demand_window_s,
                                     window_s=settings.autoscale_signal_window_s,
                                     half_life_s=settings.autoscale_signal_half_life_s)
        self.autoscaler = Autoscaler.make(settings.autoscale_policy, config=AutoscalerConfig(
            stabilization=StabilizationConfig(down_window_s=settings.scale_down_window_s,
                                              down_periods=settings.scale_down_periods)))
        self.executor = Executor(settings, self.providers, self.book, self.costs, registry,
                                 tokens, events, metrics, clock)
        self._pools: dict[str, PoolState] = {}
        self._wake = asyncio.Event()
        self._launches: set[asyncio.Task[None]] = set()
        registry.on_draining.append(self._worker_draining)
        metrics.watch(self)

    async def load(self) -> tuple[int, int]:
        return await self.book.load(), await self.costs.load()

    # hooks for bursts and the API ----------------------------------------------------------------
    def set_floor(self, pool: str, owner: str, replicas: int) -> None:
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self._state(pool).floors[owner] = replicas
        self.wake()

    def clear_floor(self, pool: str, owner: str) -> None:
        state = self._pools.get(pool)
        if state is not None and state.floors.pop(owner, None) is not None:
            self.wake()

    def wake(self) -> None:
        self._wake.set()

    def pool_changed(self, pool: str) -> None:
        self.wake()

    def pool_deleted(self, pool: str) -> int:
        """The pool is gone: its instances are released (drain first) from the next tick."""
        self.autoscaler.forget(pool)
        self.tracker.forget(pool)
        state = self._pools.pop(pool, None)
        if state is not None and state.launch is not None:
            state.launch.cancel()
        self.wake()
        return len(self.book.of_pool(pool))

    def pool_view(self, pool: str) -> PoolView:
        state = self._state(pool)
        spec = self.catalog.pool(pool)
        views = []
        workers = self._workers_by_instance()
        for instance in self.book.of_pool(pool):
            worker = workers.get(instance.instance_id)
            is_ready = worker is not None and self.registry.is_ready(worker.worker_id)
            views.append(instance_view(instance, self.book.get(instance.instance_id) or {},
                                       worker, is_ready))
        views += [v for v in self.executor.terminated.values()
                  if self._terminated_pool(v.instance_id) == pool]
        ready = sum(1 for v in views if v.state == "ready") + self._unmanaged_ready(pool, spec)
        starting = sum(1 for v in views if v.state in ("launching", "starting"))
        desired = state.desired if state.desired is not None else sum(
            1 for v in views if v.state in ("launching", "starting", "ready"))
        return PoolView(pool=pool, desired=desired, ready=ready, starting=starting,
                        instances=tuple(sorted(views, key=lambda v: v.launched_at)),
                        waiting_capacity=state.waiting_capacity, last_error=state.last_error,
                        floors=dict(state.floors))

    def status(self, pool: str) -> dict[str, Any]:
        """The `status` of a pool in GET /v1/pools."""
        view = self.pool_view(pool)
        state = self._state(pool)
        signals = state.signals
        # The last change says more than the latest hold; a pool that never changed shows its
        # latest decision.
        decision = state.last_change or state.decision
        queue = signals.queue_depth if signals is not None else None
        return {
            "desired_replicas": view.desired, "ready_replicas": view.ready,
            "starting_replicas": view.starting,
            "queue_depth": None if queue is None else round(queue, 3),
            "ttft_p95_ms": None if signals is None or signals.latency_p95_ms is None
            else round(signals.latency_p95_ms, 3),
            "cost_per_hour_usd": round(self.costs.rate_usd_per_hour(pool), 6),
            "total_cost_usd": round(self.costs.spent_usd(pool), 6),
            "last_decision": None if decision is None else {
                "time": decision.at, "direction": _direction(decision),
                "reason": decision.reason},
            "waiting_capacity": view.waiting_capacity, "last_error": view.last_error,
            "floors": view.floors,
            "instances": [v.as_dict() for v in view.instances],
        }

    async def scale(self, pool: str, replicas: int) -> int:
        """A desired count set by hand: clamped to [floor, max], applied now; the autoscaler's
        stabilization takes it from there (the count enters its scale-down window)."""
        spec = self.catalog.pool(pool)
        if spec is None:
            raise KeyError(pool)
        state = self._state(pool)
        effective = self._effective(pool, spec)
        target = min(max(replicas, effective.min_replicas), spec.max_replicas)
        now = self.clock()
        signals = self._observe(pool, effective, await self._reports(), now,
                                await self._next_price(spec))
        current = len(signals.live)
        self.autoscaler.stabilizer.apply(pool, current, target, now, bypass_up=True,
                                         bypass_down=True)
        self.autoscaler.stabilizer.record_target(pool, target)
        drain = tuple(choose_victims(signals.replicas, current - target, reason="manual"))
        decision = ScaleDecision(pool, "manual", now, current, target,
                                 max(0, target - current), drain,
                                 f"set by hand to {replicas}" + (
                                     f" (clamped to {target})" if target != replicas else ""),
                                 {"requested": replicas, "live": current})
        self._record(pool, state, decision, manual=True)
        await self._apply(pool, spec, state, decision, signals)
        return target

    # the loop -------------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("capacity tick failed; carrying on")
            raise_if_cancelling()
            try:
                async with asyncio.timeout(self._interval()):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    def _interval(self) -> float:
        at_zero = any(s.signals is not None and not s.signals.live for s in self._pools.values())
        return (self.settings.autoscale_interval_at_zero_s if at_zero
                else self.settings.autoscale_interval_s)

    async def tick(self) -> None:
        now = self.clock()
        reports = await self._reports()
        await self.executor.progress(now, self.registry.records())
        pools = self.catalog.pools()
        for name, spec in pools.items():
            await self._tick_pool(name, spec, reports, now)
        await self._release_strays(pools)

    async def _tick_pool(self, name: str, spec: Pool, reports: list[RouterReport],
                         now: float) -> None:
        state = self._state(name)
        if state.launching():
            return
        if spec.provider not in self.providers:
            error = f"provider {spec.provider!r} is not enabled (CONTROL_PLANE_PROVIDERS)"
            if state.last_error != error:
                self.events.emit("capacity.provider_missing", f"pool {name}: {error}",
                                 severity="error", subject=name)
            state.last_error = error
            return
        effective = self._effective(name, spec)
        signals = self._observe(name, effective, reports, now, await self._next_price(spec))
        decision = self.autoscaler.decide(signals, now)
        self._record(name, state, decision)
        await self._apply(name, spec, state, decision, signals)

    async def _apply(self, name: str, spec: Pool, state: PoolState, decision: ScaleDecision,
                     signals: PoolSignals) -> None:
        if decision.launch > 0 and self.clock() >= state.retry_at and not state.launching():
            live = [i for i in self.book.of_pool(name) if not self._draining(i)]
            state.launch = asyncio.create_task(
                self._launch(name, spec, state, decision.launch, live, decision.reason),
                name=f"launch-{name}")
            self._launches.add(state.launch)
            state.launch.add_done_callback(self._launches.discard)
        for order in decision.drain:
            await self.executor.release(order.instance_id, order.worker_id, order.reason)

    async def _launch(self, name: str, spec: Pool, state: PoolState, count: int,
                      live: list[Instance], reason: str) -> None:
        outcome = await self.executor.launch(name, spec, count, live, reason=reason)
        state.waiting_capacity = outcome.waiting_capacity
        state.last_error = outcome.error
        if outcome.launched < count:
            state.retry_at = self.clock() + self.settings.launch_retry_s
        self.wake()

    async def _release_strays(self, pools: Mapping[str, Pool]) -> None:
        """Instances of deleted pools, or of pools now on another provider: drain, release."""
        workers = self._workers_by_instance()
        for instance in self.book.instances():
            spec = pools.get(instance.pool)
            if spec is not None and spec.provider == instance.provider:
                continue
            if self._draining(instance):
                continue
            why = "pool deleted" if spec is None else "pool moved to another provider"
            worker = workers.get(instance.instance_id)
            await self.executor.release(instance.instance_id,
                                        worker.worker_id if worker else None, why)

    # signals ------------------------------------------------------------------------------------
    def _effective(self, name: str, spec: Pool) -> Pool:
        """The spec the policy sees: floors raise min_replicas; the cap is the pool's cap."""
        state = self._state(name)
        floor = max([spec.min_replicas, *state.floors.values()])
        cap = None if spec.max_price_per_hour is None else \
            spec.max_price_per_hour * spec.max_replicas
        return dataclasses.replace(spec, min_replicas=min(floor, spec.max_replicas),
                                   max_price_per_hour=cap)

    def _observe(self, name: str, spec: Pool, reports: list[RouterReport], now: float,
                 next_price: float | None) -> PoolSignals:
        instances = [i for i in self.book.of_pool(name) if not self._draining(i)]
        signals = self.tracker.observe(name, spec, workers=self.registry.records(),
                                       instances=instances, reports=reports, now=now,
                                       next_price_per_hour=next_price)
        self._state(name).signals = signals
        return signals

    async def _next_price(self, spec: Pool) -> float | None:
        """What one more replica would cost: the cheapest known type within the ceiling."""
        provider = self.providers.get(spec.provider)
        if provider is None:
            return None
        types = list(spec.instance_types) or _default_types(provider)
        prices = []
        for instance_type in types:
            try:
                price = await provider.price(instance_type)
            except Exception as exc:  # a price lookup must never stop the loop
                log.debug("price of %s unavailable: %s", instance_type, exc)
                continue
            if price is not None and (spec.max_price_per_hour is None
                                      or price <= spec.max_price_per_hour):
                prices.append(price)
        return min(prices, default=None)

    async def _reports(self) -> list[RouterReport]:
        try:
            return await read_reports(self.store)
        except FleetStoreError as exc:
            log.debug("router reports unavailable: %s", exc)
            return []

    # bookkeeping --------------------------------------------------------------------------------
    def _record(self, name: str, state: PoolState, decision: ScaleDecision, *,
                manual: bool = False) -> None:
        state.decision = decision
        state.desired = decision.target
        if decision.action != "hold":
            state.last_change = decision
        log.debug("pool %s: %s -> %s (%s); idle %.1fs", name, decision.current, decision.target,
                  decision.reason, decision.inputs.get("idle_s") or 0.0)
        direction = _direction(decision)
        self.metrics.decisions.labels(name, direction).inc()
        if decision.action == "hold" and not manual:
            # Holds are recorded when what holds changes, not at every tick.
            key = f"{decision.target}:{decision.inputs.get('deciding_signal')}"
            if state.reported_hold == key:
                return
            state.reported_hold = key
        else:
            state.reported_hold = None
        event = decision.event()
        kind = "autoscaler.manual" if manual else event.kind
        self.events.emit(kind, event.message, subject=name, data=event.data,
                         now=decision.at)

    def _worker_draining(self, record: WorkerRecord) -> None:
        """Registry listener: a worker started draining. A Spot notice means a replacement now."""
        if record.drain_reason not in INTERRUPTION_REASONS:
            return
        now = self.clock()
        instance = self.book.instance(record.instance_id)
        instance_type = (instance.instance_type if instance else record.instance_type) or "-"
        zone = instance.zone if instance else record.zone
        pool = record.pool or "-"
        self.metrics.interruptions.labels(pool, instance_type).inc()
        demoted = self.demotions.record_interruption(instance_type, zone, now)
        self.events.emit(
            "capacity.interrupted",
            f"pool {pool}: {record.drain_reason} on {record.instance_id} ({instance_type}, "
            f"{zone}); launching a replacement" + ("; type demoted" if demoted else ""),
            severity="warning", subject=record.instance_id, now=now,
            data={"pool": pool, "reason": record.drain_reason, "instance_type": instance_type,
                  "zone": zone, "deadline": record.drain_deadline, "demoted": demoted})
        if demoted:
            self.events.emit("capacity.demoted", f"{instance_type} in {zone} demoted after "
                             "repeated interruptions", severity="warning", subject=pool,
                             now=now, data={"instance_type": instance_type, "zone": zone})
        self.wake()

    def _state(self, pool: str) -> PoolState:
        state = self._pools.get(pool)
        if state is None:
            state = self._pools[pool] = PoolState()
        return state

    def _draining(self, instance: Instance) -> bool:
        doc = self.book.get(instance.instance_id) or {}
        return doc.get("drain_started_at") is not None

    def _workers_by_instance(self) -> dict[str, WorkerRecord]:
        out: dict[str, WorkerRecord] = {}
        for worker in self.registry.records():
            current = out.get(worker.instance_id)
            if current is None or worker.registered_at > current.registered_at:
                out[worker.instance_id] = worker
        return out

    def _unmanaged_ready(self, pool: str, spec: Pool | None) -> int:
        if spec is None:
            return 0
        return sum(1 for w in self.registry.records()
                   if w.provider == "static" and self.registry.is_ready(w.worker_id)
                   and (w.pool == pool or (w.pool is None and w.model_id == spec.model_id)))

    def _terminated_pool(self, instance_id: str) -> str | None:
        doc = self.costs.docs.get(instance_id)
        return None if doc is None else doc.get("pool")

    # metrics (scrape time) ------------------------------------------------------------------------
    def gauge_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, spec in self.catalog.pools().items():
            view = self.pool_view(name)
            signals = self._state(name).signals
            latency = None if signals is None else signals.latency_p95_ms
            rows.append({
                "pool": name, "desired": view.desired, "ready": view.ready,
                "starting": view.starting,
                "queue_depth": None if signals is None else (signals.queue_depth or 0.0),
                "ttft_p95_seconds": None if latency is None else latency / 1000.0,
                "ttft_slo_seconds": None if spec.ttft_p95_slo_ms is None
                else spec.ttft_p95_slo_ms / 1000.0,
                "cost_per_hour_usd": self.costs.rate_usd_per_hour(name),
                "max_cost_per_hour_usd": None if spec.max_price_per_hour is None
                else spec.max_price_per_hour * spec.max_replicas})
        return rows

    def route_ready_pools(self) -> dict[str, int]:
        out = {}
        for model, route in self.catalog.routes().items():
            pools = [t.pool for t in route.targets if isinstance(t, PoolTarget)]
            out[model] = sum(1 for p in pools if self.pool_view(p).ready > 0)
        return out

    def total_spent_usd(self) -> float:
        return self.costs.spent_usd()

    async def aclose(self) -> None:
        tasks = list(self._launches)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name, provider in self.providers.items():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing the %s provider failed", name)
        # The local provider stops its instances when it closes: they are gone, not leaked.
        try:
            for instance in self.book.instances():
                if instance.provider == "local" and "local" in self.providers:
                    await self.book.remove(instance.instance_id)
                    await self.costs.end(instance.instance_id)
        except FleetStoreError as exc:
            log.warning("could not record the local instances as stopped: %s", exc)


def _direction(decision: ScaleDecision) -> str:
    return {"scale_up": "up", "scale_down": "down", "hold": "hold"}[decision.action]


def _default_types(provider: CapacityProvider) -> list[str]:
    config = getattr(provider, "config", None)
    default = getattr(config, "default_instance_type", None)
    if default:
        return [default]
    return list(getattr(config, "default_instance_types", ()) or ())
