"""Carrying decisions out: launches through the pool's provider, drain-first releases.

Launch: one `LaunchRequest` per decision (the pool's spec, the room left under its spending cap
as the per-instance ceiling, the pool's live instances for spread). Each instance is written to
the instance book (before its agent can register: the registry checks advertised URLs against
it) and to the cost ledger. Failures are events and metrics; a pool that found no capacity waits
`launch_retry_s` before trying again (`waiting_capacity` meanwhile).

Release, drain first:

    worker registered ─► registry.request_drain (its next heartbeat reply says drain: the agent
                         stops taking requests, finishes what it holds, deregisters)
    then terminate when: the worker is gone | it reports draining with nothing in flight |
                         `drain_timeout_s` passed
    no worker yet (booting) ─► terminate at once

`progress()` runs at every tick: it notes facts on instances (first worker, first ready, drain
start - also for drains the agent started itself, e.g. on a Spot notice), and terminates what is
due: drained instances, instances whose worker vanished without draining, instances that never
produced a worker within `boot_timeout_s`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from control_plane.capacity.book import InstanceBook
from control_plane.capacity.costs import CostLedger
from control_plane.capacity.gauges import CapacityMetrics
from control_plane.capacity.views import TERMINATED_KEPT_S, InstanceView
from control_plane.errors import NotFound
from control_plane.events import EventLog
from control_plane.providers.base import (
    CapacityError,
    CapacityProvider,
    Instance,
    InsufficientCapacity,
    LaunchRequest,
    PriceCapExceeded,
    ProviderRejected,
    ProviderUnavailable,
)
from control_plane.registry import WorkerRegistry
from control_plane.settings import ControlPlaneSettings
from control_plane.tokens import WorkerTokens
from fleet.catalog import Pool
from fleet.schemas import WorkerRecord

log = logging.getLogger("flotilla.capacity.executor")


@dataclass
class LaunchOutcome:
    launched: int = 0
    error: str | None = None
    waiting_capacity: bool = False


@dataclass
class Executor:
    settings: ControlPlaneSettings
    providers: Mapping[str, CapacityProvider]
    book: InstanceBook
    costs: CostLedger
    registry: WorkerRegistry
    tokens: WorkerTokens
    events: EventLog
    metrics: CapacityMetrics
    clock: Callable[[], float]
    terminated: dict[str, InstanceView] = field(default_factory=dict)  # recent, for views
    _terminating: set[str] = field(default_factory=set)

    # launch -------------------------------------------------------------------------------------
    async def launch(self, name: str, spec: Pool, count: int, existing: Sequence[Instance],
                     *, reason: str) -> LaunchOutcome:
        provider = self.providers.get(spec.provider)
        if provider is None:
            return LaunchOutcome(error=f"provider {spec.provider!r} is not enabled "
                                       "(CONTROL_PLANE_PROVIDERS)")
        ceiling = None
        if spec.max_price_per_hour is not None:
            # Per instance: the pool's price ceiling, and no more than the room left under the
            # pool's cap (max_price_per_hour x max_replicas) shared by the new replicas.
            spend = sum(i.price_per_hour or 0.0 for i in existing)
            room = spec.max_price_per_hour * spec.max_replicas - spend
            ceiling = min(spec.max_price_per_hour, max(0.0, room / max(1, count)))
        try:
            request = LaunchRequest(
                pool=name, model_id=spec.model_id, engine=spec.engine, count=count,
                control_plane_url=self.settings.agent_facing_url,
                instance_types=tuple(spec.instance_types), max_price_per_hour=ceiling,
                on_demand_fallback=spec.on_demand_fallback,
                engine_args=tuple(spec.engine_args), existing=tuple(existing))
            result = await provider.launch(request)
        except InsufficientCapacity as exc:
            self._failures(name, exc.attempts)
            kind = "capacity.price_cap" if isinstance(exc, PriceCapExceeded) else \
                "capacity.insufficient"
            self.events.emit(kind, f"pool {name}: no capacity for {count} replica(s): {exc}",
                             severity="warning", subject=name,
                             data={"attempts": [_attempt(a) for a in exc.attempts],
                                   "retry_in_s": self.settings.launch_retry_s})
            return LaunchOutcome(error=str(exc), waiting_capacity=True)
        except (ProviderUnavailable, ProviderRejected, ValueError) as exc:
            kind = "capacity.provider_unavailable" if isinstance(exc, ProviderUnavailable) \
                else "capacity.launch_rejected"
            self.metrics.launch_failures.labels(name, "-", type(exc).__name__).inc()
            self.events.emit(kind, f"pool {name}: launching {count} replica(s) failed: {exc}",
                             severity="error", subject=name)
            return LaunchOutcome(error=str(exc))
        self._failures(name, result.failures)
        for instance in result.instances:
            await self.book.record(instance)
            await self.costs.start(instance)
            price = "unknown price" if instance.price_per_hour is None else \
                f"${instance.price_per_hour:.3f}/h"
            self.events.emit(
                "instance.launched",
                f"pool {name}: launched {instance.instance_id} ({instance.instance_type}, "
                f"{instance.market}, {instance.zone}, {price}): {reason}",
                subject=instance.instance_id,
                data={"pool": name, "instance_type": instance.instance_type,
                      "market": instance.market, "zone": instance.zone,
                      "price_per_hour": instance.price_per_hour,
                      "provider_instance_id": instance.provider_instance_id})
        short = count - len(result.instances)
        if short > 0:
            self.events.emit("capacity.insufficient",
                             f"pool {name}: launched {len(result.instances)} of {count}",
                             severity="warning", subject=name,
                             data={"attempts": [_attempt(a) for a in result.attempts]})
        return LaunchOutcome(launched=len(result.instances),
                             error=None if short <= 0 else "partial launch",
                             waiting_capacity=short > 0)

    def _failures(self, name: str, attempts: Sequence[Any]) -> None:
        for attempt in attempts:
            if not attempt.launched:
                self.metrics.launch_failures.labels(name, attempt.instance_type,
                                                    attempt.outcome).inc()

    # release ------------------------------------------------------------------------------------
    async def release(self, instance_id: str, worker_id: str | None, reason: str) -> None:
        """Drain first: ask the worker to drain, terminate once it is done (see progress)."""
        doc = self.book.get(instance_id)
        if doc is None:
            return
        now = self.clock()
        worker = self.registry.get(worker_id) if worker_id else self._worker_of(instance_id)
        if worker is None:
            await self.terminate(instance_id, f"{reason} (no worker to drain)")
            return
        if doc.get("drain_started_at") is None:
            await self.book.note(instance_id, drain_started_at=now, drain_reason=reason)
        try:
            self.registry.request_drain(worker.worker_id, now, reason)
        except NotFound:
            await self.terminate(instance_id, f"{reason} (worker gone)")

    async def progress(self, now: float, workers: Sequence[WorkerRecord]) -> None:
        by_instance: dict[str, WorkerRecord] = {}
        for worker in workers:
            current = by_instance.get(worker.instance_id)
            if current is None or worker.registered_at > current.registered_at:
                by_instance[worker.instance_id] = worker
        for instance_id, doc in self.book.all().items():
            worker = by_instance.get(instance_id)
            facts: dict[str, Any] = {}
            if worker is not None:
                if doc.get("worker_seen_at") is None:
                    facts["worker_seen_at"] = now
                if doc.get("ready_at") is None and self.registry.is_ready(worker.worker_id):
                    facts["ready_at"] = now
                draining = worker.drain_requested_at is not None or worker.status == "draining"
                if draining and doc.get("drain_started_at") is None:
                    facts.update(drain_started_at=now,
                                 drain_reason=worker.drain_reason or "agent")
            if facts:
                await self.book.note(instance_id, **facts)
                doc = doc | facts
            due = self._due(doc, worker, now)
            if due is not None:
                await self.terminate(instance_id, due)
        for instance_id, view in list(self.terminated.items()):
            if view.terminated_at is not None and now - view.terminated_at > TERMINATED_KEPT_S:
                del self.terminated[instance_id]

    def _due(self, doc: dict[str, Any], worker: WorkerRecord | None, now: float) -> str | None:
        started = doc.get("drain_started_at")
        why = doc.get("drain_reason") or "released"
        if started is not None:
            if worker is None:
                return f"{why}: drained"
            if worker.status == "draining" and worker.last_heartbeat > started \
                    and worker.inflight == 0 and worker.queue_depth == 0:
                return f"{why}: drained (idle)"
            if now - started >= self.settings.drain_timeout_s:
                return f"{why}: drain timed out after {now - started:.0f}s"
            return None
        if worker is None and doc.get("worker_seen_at") is not None:
            return "its worker went away without draining"
        if worker is None and now - float(doc.get("launched_at") or now) \
                > self.settings.boot_timeout_s:
            return f"no worker registered within {self.settings.boot_timeout_s:.0f}s of launch"
        return None

    async def terminate(self, instance_id: str, reason: str) -> bool:
        doc = self.book.get(instance_id)
        if doc is None or instance_id in self._terminating:
            return False
        instance = Instance.from_doc(doc)
        provider = self.providers.get(instance.provider)
        self._terminating.add(instance_id)
        try:
            if provider is not None:
                await provider.terminate([instance_id])
        except CapacityError as exc:
            self.events.emit("instance.terminate_failed",
                             f"terminating {instance_id} failed ({exc}); retrying",
                             severity="error", subject=instance_id,
                             data={"pool": instance.pool})
            return False
        finally:
            self._terminating.discard(instance_id)
        now = self.clock()
        await self.book.remove(instance_id)
        await self.costs.end(instance_id, now)
        worker = self._worker_of(instance_id)
        if worker is None:
            await self.tokens.forget(instance_id)
        self.terminated[instance_id] = InstanceView(
            instance_id=instance_id, instance_type=instance.instance_type,
            market=instance.market, zone=instance.zone, state="terminated",
            price_per_hour=instance.price_per_hour, launched_at=instance.launched_at,
            ready_at=doc.get("ready_at"), provider=instance.provider, terminated_at=now)
        self.events.emit("instance.terminated", f"pool {instance.pool}: terminated "
                         f"{instance_id} ({instance.instance_type}): {reason}",
                         subject=instance_id,
                         data={"pool": instance.pool, "reason": reason,
                               "provider_instance_id": instance.provider_instance_id})
        return True

    def _worker_of(self, instance_id: str) -> WorkerRecord | None:
        found = [w for w in self.registry.records() if w.instance_id == instance_id]
        return max(found, key=lambda w: w.registered_at) if found else None


def _attempt(attempt: Any) -> dict[str, Any]:
    return {"instance_type": attempt.instance_type, "zone": attempt.zone,
            "market": attempt.market, "outcome": attempt.outcome, "message": attempt.message}
