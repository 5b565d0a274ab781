"""The router's local view of the fleet: ready workers, routes and pools, refreshed from the store.

Requests never wait for the store: they read `SnapshotKeeper.current`, an immutable
`FleetSnapshot` swapped whole when a refresh succeeds. Refreshes happen

  - on change notifications (topics `workers`, `routes`, `pools`; a subscription loop that
    reconnects with backoff), at most every `min_interval_s`, and
  - every `refresh_period_s` regardless, so a lost notification only costs latency.

When the store cannot be reached, the last snapshot stays in use; `/readyz` stays 200 while it is
younger than `max_snapshot_age_s` and reports the staleness. When the store answers but has no
epoch (Redis restarted empty or was flushed; the control plane re-seeds it within a second or so)
the router keeps its last snapshot instead of taking an empty fleet for the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fleet.catalog import Pool, Route
from fleet.schemas import WorkerRecord
from fleet.store import POOLS, ROUTES, TOPIC_KEYS, FleetStore, StoreUnavailable, from_doc
from fleet.validation import ValidationError, parse
from router.balancing import Endpoint

log = logging.getLogger("router.snapshot")

SNAPSHOT_TOPICS = frozenset({"workers", "routes", "pools"})


def _serving(record: WorkerRecord) -> bool:
    # The control plane keeps draining workers out of ready sets; this guards the window between
    # an agent's status change and the next save.
    return (record.status == "ready" and record.drain_requested_at is None
            and record.url_error is None)


def _endpoint(record: WorkerRecord) -> Endpoint:
    return Endpoint(key=record.worker_id, base_url=record.url.rstrip("/"),
                    queue_depth=record.queue_depth)


@dataclass(frozen=True)
class FleetSnapshot:
    workers: Mapping[str, tuple[WorkerRecord, ...]]  # model id -> ready workers
    routes: Mapping[str, Route]
    pools: Mapping[str, Pool]
    taken_at: float  # time.monotonic() of the store read it came from
    epoch: str | None = None
    # derived once per snapshot, read per request
    by_model: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    by_pool: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    pools_by_model: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, workers: Mapping[str, list[WorkerRecord]], routes: Mapping[str, Route],
              pools: Mapping[str, Pool], *, taken_at: float, epoch: str | None) -> FleetSnapshot:
        ready = {m: tuple(r for r in records if _serving(r)) for m, records in workers.items()}
        ready = {m: records for m, records in ready.items() if records}
        by_model = {m: tuple(_endpoint(r) for r in records) for m, records in ready.items()}
        by_pool: dict[str, tuple[Endpoint, ...]] = {}
        pools_by_model: dict[str, list[str]] = {}
        for name in sorted(pools):
            pool = pools[name]
            pools_by_model.setdefault(pool.model_id, []).append(name)
            # A pool is served by its own workers, and by hand-enrolled workers (no pool) of its
            # model.
            by_pool[name] = tuple(_endpoint(r) for r in ready.get(pool.model_id, ())
                                  if r.pool in (None, name))
        return cls(workers=ready, routes=dict(routes), pools=dict(pools), taken_at=taken_at,
                   epoch=epoch, by_model=by_model, by_pool=by_pool,
                   pools_by_model={m: tuple(n) for m, n in pools_by_model.items()})

    @classmethod
    def empty(cls) -> FleetSnapshot:
        return cls.build({}, {}, {}, taken_at=time.monotonic(), epoch=None)

    def worker_ids(self) -> set[str]:
        return {r.worker_id for records in self.workers.values() for r in records}


def _parse_routes(docs: Mapping[str, dict]) -> dict[str, Route]:
    routes = {}
    for model, doc in docs.items():
        try:
            routes[model] = parse(Route, doc, allow_unknown=True)
        except ValidationError as exc:
            log.warning("ignoring invalid route %r: %s", model, exc.message)
    return routes


def _parse_pools(docs: Mapping[str, dict]) -> dict[str, Pool]:
    pools = {}
    for name, doc in docs.items():
        try:
            pools[name] = from_doc(Pool, doc)
        except (ValidationError, TypeError, ValueError) as exc:
            log.warning("ignoring invalid pool %r: %s", name, exc)
    return pools


class SnapshotKeeper:
    def __init__(self, store: FleetStore, *, refresh_period_s: float, store_timeout_s: float,
                 max_snapshot_age_s: float, on_keys_changed: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._period = refresh_period_s
        self._min_interval = min(0.1, refresh_period_s)
        self._timeout = store_timeout_s
        self._max_age = max_snapshot_age_s
        self._on_keys_changed = on_keys_changed
        self._clock = clock
        self.current: FleetSnapshot | None = None
        self.store_ok = False
        self.epoch_missing = False
        self.last_ok_at: float | None = None  # last successful store read
        self.last_error: str | None = None
        self.known_models: set[str] = set()  # every model this router has seen served
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[FleetSnapshot], None]] = []

    # reading -----------------------------------------------------------------------------------
    def snapshot(self) -> FleetSnapshot:
        return self.current if self.current is not None else _EMPTY

    def age(self) -> float | None:
        """Seconds since the snapshot in use was read from the store (None: never read)."""
        return None if self.current is None else self._clock() - self.current.taken_at

    def fresh(self) -> bool:
        age = self.age()
        return age is not None and age <= self._max_age

    def on_change(self, listener: Callable[[FleetSnapshot], None]) -> None:
        self._listeners.append(listener)

    async def wait_changed(self, timeout: float) -> bool:
        """Wait for the next snapshot swap (True) or `timeout` (False)."""
        event = self._changed
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
            return True
        except TimeoutError:
            return False

    def request_refresh(self) -> None:
        self._wake.set()

    # refreshing --------------------------------------------------------------------------------
    async def refresh(self) -> bool:
        """Read the store once; swap the snapshot if it has data. False if the store failed."""
        started = self._clock()
        try:
            async with asyncio.timeout(self._timeout * 3):
                epoch = await self._store.get_epoch()
                workers = await self._store.ready_workers()
                routes = _parse_routes(await self._store.get_docs(ROUTES))
                pools = _parse_pools(await self._store.get_docs(POOLS))
        except (StoreUnavailable, TimeoutError) as exc:
            if self.store_ok:
                log.warning("fleet store unreachable, serving from the last snapshot: %s", exc)
            self.store_ok = False
            self.last_error = str(exc) or type(exc).__name__
            return False
        if not self.store_ok and self.last_ok_at is not None:
            log.info("fleet store reachable again")
        self.store_ok = True
        self.last_ok_at = started
        self.last_error = None
        if epoch is None and self.current is not None:
            if not self.epoch_missing:
                log.warning("fleet store has no epoch (lost its data?); keeping the last "
                            "snapshot until the control plane re-seeds it")
            self.epoch_missing = True
            return True
        self.epoch_missing = False
        self._swap(FleetSnapshot.build(workers, routes, pools, taken_at=started, epoch=epoch))
        return True

    def _swap(self, snapshot: FleetSnapshot) -> None:
        self.current = snapshot
        self.known_models.update(snapshot.workers)
        self.known_models.update(snapshot.routes)
        self.known_models.update(p.model_id for p in snapshot.pools.values())
        for listener in self._listeners:
            try:
                listener(snapshot)
            except Exception:
                log.exception("snapshot listener failed")
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def run_refresh_loop(self) -> None:
        """Refresh every period, or sooner when a notification asks (owned task)."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("snapshot refresh failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._period):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._min_interval)  # coalesce bursts of notifications

    async def run_subscription_loop(self) -> None:
        """Listen for change notifications; reconnect with backoff (owned task)."""
        delay = 0.1
        while True:
            try:
                async with self._store.subscribe() as subscription:
                    delay = 0.1
                    # Changes may have been missed while disconnected.
                    self.request_refresh()
                    if self._on_keys_changed is not None:
                        self._on_keys_changed()
                    async for topic in subscription:
                        if topic in SNAPSHOT_TOPICS:
                            self.request_refresh()
                        elif topic == TOPIC_KEYS and self._on_keys_changed is not None:
                            self._on_keys_changed()
            except StoreUnavailable as exc:
                log.debug("change subscription lost: %s", exc)
            except Exception:
                log.exception("change subscription failed")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)


_EMPTY = FleetSnapshot.empty()
