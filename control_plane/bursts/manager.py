"""`BurstManager`: the control-plane service behind `/v1/bursts`.

    POST /v1/bursts ─► create ─► doc in `bursts` ─► capacity.set_floor(pool, burst id, replicas)
    every tick: pool_view + cost ledger + traffic ─► Observation ─► state.step ─► doc, events
    end (limit, cancel, pool gone) ─► capacity.clear_floor(pool, burst id)

The store is written first and memory (and the timeline) follow only once it accepted the write,
so a store outage replays the same step at the next tick instead of losing or doubling events.
At start the documents are read back and running bursts set their floors again: a control plane
restart resumes them. The documents are held in memory (`HeldCollection`) so the store guard
rewrites them after a Redis flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from control_plane.bursts.activity import PoolActivity
from control_plane.bursts.records import BurstRecord, BurstRequest
from control_plane.bursts.state import Observation, created_event, step
from control_plane.errors import Conflict, NotFound, Unprocessable
from control_plane.events import EventLog
from control_plane.held import HeldCollection
from fleet import secrets
from fleet.schemas import Event, WorkerRecord
from fleet.store import BURSTS, ROUTERS, FleetStore, FleetStoreError

log = logging.getLogger("flotilla.control_plane.bursts")

MAX_ENDED_KEPT = 200  # ended bursts kept in the store (the oldest are deleted beyond this)
STARTING_STATES = frozenset({"launching", "starting"})


class InstanceView(Protocol):
    @property
    def instance_id(self) -> str: ...
    @property
    def state(self) -> str: ...


class PoolView(Protocol):
    @property
    def desired(self) -> int: ...
    @property
    def ready(self) -> int: ...
    @property
    def starting(self) -> int: ...
    @property
    def instances(self) -> Sequence[InstanceView]: ...
    @property
    def waiting_capacity(self) -> bool: ...
    @property
    def last_error(self) -> str | None: ...


class Capacity(Protocol):
    """What bursts need of the capacity manager (INTERFACES.md)."""

    def set_floor(self, pool: str, owner: str, replicas: int) -> None: ...
    def clear_floor(self, pool: str, owner: str) -> None: ...
    def pool_view(self, pool: str) -> PoolView: ...


class Costs(Protocol):
    def spent_usd(self, pool: str | None = None, since: float = 0) -> float: ...


class PoolSpec(Protocol):
    @property
    def max_replicas(self) -> int: ...


def observe(record: BurstRecord, view: PoolView | None, spent_usd: float,
            last_request_at: float | None, now: float) -> Observation:
    """Translate the capacity manager's view of the pool into the machine's input."""
    if view is None:
        return Observation(at=now, pool_exists=False, spent_usd=spent_usd,
                           last_request_at=last_request_at)
    instances = list(view.instances)
    starting = sum(1 for i in instances if i.state in STARTING_STATES)
    return Observation(
        at=now, desired=view.desired, ready=view.ready,
        starting=max(view.starting, starting), waiting_capacity=view.waiting_capacity,
        last_error=view.last_error,
        interrupted=tuple(i.instance_id for i in instances if i.state == "interrupted"),
        spent_usd=spent_usd, last_request_at=last_request_at)


class BurstManager:
    def __init__(self, store: FleetStore, events: EventLog, capacity: Capacity, costs: Costs, *,
                 pools: Callable[[str], PoolSpec | None],
                 workers: Callable[[], Iterable[WorkerRecord]],
                 clock: Callable[[], float], capacity_timeout_s: float) -> None:
        self.store = store
        self.events = events
        self.capacity = capacity
        self.costs = costs
        self.pools = pools
        self.workers = workers
        self.clock = clock
        self.capacity_timeout_s = capacity_timeout_s
        self.docs = HeldCollection(store, BURSTS)
        self.activity = PoolActivity(clock())
        self._records: dict[str, BurstRecord] = {}
        self._lock = asyncio.Lock()

    # --- reading -------------------------------------------------------------------------
    def records(self) -> list[BurstRecord]:
        """Newest first."""
        return sorted(self._records.values(), key=lambda r: (r.created_at, r.id), reverse=True)

    def get(self, burst_id: str) -> BurstRecord | None:
        return self._records.get(burst_id)

    def active_on(self, pool: str) -> BurstRecord | None:
        return next((r for r in self._records.values() if r.active and r.pool == pool), None)

    async def load(self) -> int:
        """At start: read the bursts back; running ones hold their floors again."""
        await self.docs.load()
        self._records = {}
        for burst_id, doc in self.docs.items():
            try:
                self._records[burst_id] = BurstRecord.from_doc(doc)
            except (TypeError, ValueError) as exc:
                log.error("burst document %s is unreadable (%s); ignoring it", burst_id, exc)
        for record in self._records.values():
            if record.active:
                self.capacity.set_floor(record.pool, record.id, record.replicas)
                log.info("burst %s on %s resumed in state %s", record.id, record.pool,
                         record.state)
        return len(self._records)

    # --- admin calls ---------------------------------------------------------------------
    async def create(self, request: BurstRequest) -> BurstRecord:
        if request.duration_s is None and request.idle_timeout_s is None:
            raise Unprocessable("a burst needs duration_s or idle_timeout_s (or both), so it "
                                "ends on its own", param="duration_s", code="missing_limit")
        spec = self.pools(request.pool)
        if spec is None:
            raise NotFound(f"no pool {request.pool}", param="pool", code="pool_not_found")
        if request.replicas > spec.max_replicas:
            raise Unprocessable(
                f"replicas ({request.replicas}) exceeds the pool's max_replicas "
                f"({spec.max_replicas})", param="replicas", code="above_max_replicas")
        async with self._lock:
            running = self.active_on(request.pool)
            if running is not None:
                raise Conflict(f"pool {request.pool} already has a running burst {running.id}",
                               param="pool", code="burst_running")
            now = self.clock()
            record = BurstRecord(
                id=secrets.new_id("burst"), pool=request.pool, replicas=request.replicas,
                created_at=now, state_since=now, duration_s=request.duration_s,
                idle_timeout_s=request.idle_timeout_s, budget_usd=request.budget_usd)
            first = created_event(record)
            record = record.replace(events=(first,))
            await self._save(record, (first,))
            self.capacity.set_floor(record.pool, record.id, record.replicas)
            try:
                await self._prune()
            except FleetStoreError as exc:  # the burst exists; old ones go at the next create
                log.warning("deleting old bursts failed: %s", exc)
        return record

    async def cancel(self, burst_id: str) -> BurstRecord:
        async with self._lock:
            record = self._records.get(burst_id)
            if record is None:
                raise NotFound(f"no burst {burst_id}", param="burst_id")
            if not record.active:
                return record  # cancelling an ended burst changes nothing
            record = record.replace(cancel_requested_at=self.clock())
            return await self._advance(record)

    # --- the loop ------------------------------------------------------------------------
    async def tick(self) -> None:
        """One observation of every running burst's pool."""
        if not any(r.active for r in self._records.values()):
            return
        reports = await self.store.get_docs(ROUTERS)
        self.activity.observe(reports, self.workers(), self.clock())
        async with self._lock:
            for record in [r for r in self._records.values() if r.active]:
                await self._advance(record)

    async def _advance(self, record: BurstRecord) -> BurstRecord:
        now = self.clock()
        view = self.capacity.pool_view(record.pool) if self.pools(record.pool) else None
        spent = self.costs.spent_usd(record.pool, since=record.created_at)
        result = step(record, observe(record, view, spent,
                                      self.activity.last_request_at(record.pool), now),
                      capacity_timeout_s=self.capacity_timeout_s)
        if result.record != self._records.get(record.id):
            await self._save(result.record, result.events)
        if result.record.active:
            self.capacity.set_floor(record.pool, record.id, record.replicas)
        else:
            self.capacity.clear_floor(record.pool, record.id)
        return result.record

    async def _save(self, record: BurstRecord, events: Iterable[Event]) -> None:
        await self.docs.put(record.id, record.to_doc())
        self._records[record.id] = record
        for event in events:
            self.events.emit(event.kind, event.message, severity=event.severity,
                             subject=event.subject, data=event.data, now=event.ts)

    async def _prune(self) -> None:
        ended = [r for r in self.records() if not r.active]
        for record in ended[MAX_ENDED_KEPT:]:
            await self.docs.delete(record.id)
            self._records.pop(record.id, None)

    def gauges(self) -> list[tuple[str, str, str, float]]:
        """(burst, pool, state, cost) of running bursts and the most recent ended ones."""
        shown = [r for r in self.records() if r.active]
        shown += [r for r in self.records() if not r.active][:MAX_ENDED_EXPORTED]
        return [(r.id, r.pool, r.state, r.cost_usd) for r in shown]


MAX_ENDED_EXPORTED = 20  # ended bursts still exported as metrics (bounded labels)
