"""Group commit of worker records, ready sets, events and change notifications to the store.

Every change the registry makes in memory is queued here; one owned task writes what is queued in
one `save_workers` transaction per round trip, then the events, then one `workers` notification if
readiness or membership changed. Under load, changes that arrive while a write is in flight are
coalesced into the next one (a worker heartbeating twice is written once, newest first), which is
what keeps 1,000 workers x 0.1 Hz cheap for Redis and for the routers listening for changes.

Ordering: there is only one writer, so the store always converges to the newest state in memory.
A deletion queued before a save of the same id is written first (a worker that re-registers with
another model leaves the old model's ready set); a deletion queued after a save drops the save.

When the store fails, the batch goes back in the queue (unless a newer change superseded it) and
the task retries with a growing pause; waiters learn of the failure but memory stays the truth.

    handler ── save()/delete()/event() ──► queue ── flusher task ──► store
       └─ await committed(ticket) ◄──────────────── batch written (or failed)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from control_plane.loops import raise_if_cancelling
from control_plane.metrics import ControlPlaneMetrics
from fleet.schemas import Event, WorkerRecord
from fleet.store import TOPIC_WORKERS, FleetStore, FleetStoreError

log = logging.getLogger("flotilla.control_plane.writer")

MAX_QUEUED_EVENTS = 10_000  # while the store is down; the oldest are dropped beyond this
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0


class WorkerWriter:
    def __init__(self, store: FleetStore, metrics: ControlPlaneMetrics, *,
                 coalesce_s: float = 0.0) -> None:
        self.store = store
        self.metrics = metrics
        self.coalesce_s = coalesce_s
        self._saves: dict[str, tuple[WorkerRecord, bool]] = {}
        self._deletes: set[str] = set()
        self._events: list[Event] = []
        self._publish = False
        self._pending: asyncio.Future[BaseException | None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight: asyncio.Future[BaseException | None] | None = None
        self.failing = False

    # queueing (synchronous: callers change memory and queue in one step, with no await between)
    def save(self, record: WorkerRecord, ready: bool, *, publish: bool = False) -> None:
        self._saves[record.worker_id] = (record, ready)
        self._publish = self._publish or publish
        self._kick()

    def delete(self, worker_id: str) -> None:
        self._saves.pop(worker_id, None)
        self._deletes.add(worker_id)
        self._publish = True
        self._kick()

    def event(self, event: Event) -> None:
        self._events.append(event)
        if len(self._events) > MAX_QUEUED_EVENTS:
            del self._events[: len(self._events) - MAX_QUEUED_EVENTS]
        self._kick()

    def publish(self) -> None:
        self._publish = True
        self._kick()

    def _kick(self) -> None:
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._wake.set()

    # waiting ---------------------------------------------------------------------------------
    async def committed(self, timeout: float) -> BaseException | None:
        """Wait until what is queued now was written: None, the store's error, or a timeout."""
        pending = self._pending or self._inflight
        if pending is None:
            return None
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(pending)
        except TimeoutError as exc:
            return exc

    async def drained(self, timeout: float) -> bool:
        """Wait until nothing is queued (shutdown, tests)."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    # the flusher task ------------------------------------------------------------------------
    async def run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await self._wake.wait()
            if self.coalesce_s:
                # Let the changes of the next few milliseconds join this round trip.
                await asyncio.sleep(self.coalesce_s)
            self._wake.clear()
            saves, deletes, events, publish = self._saves, self._deletes, self._events, \
                self._publish
            waiter, self._pending = self._pending, None
            self._inflight = waiter
            self._saves, self._deletes, self._events, self._publish = {}, set(), [], False
            try:
                error = await self._write(saves, deletes, events, publish)
            finally:
                self._inflight = None
            raise_if_cancelling()
            if waiter is not None and not waiter.done():
                waiter.set_result(error)
            if error is None:
                delay = RETRY_MIN_S
                if not (self._saves or self._deletes or self._events or self._publish):
                    self._idle.set()
                continue
            self._requeue(saves, deletes, events, publish)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)

    async def _write(self, saves: dict[str, tuple[WorkerRecord, bool]], deletes: set[str],
                     events: list[Event], publish: bool) -> BaseException | None:
        operation = "delete_worker"
        try:
            for worker_id in deletes:
                await self.store.delete_worker(worker_id)
            operation = "save_workers"
            if saves:
                await self.store.save_workers(list(saves.values()))
                self.metrics.store_write_batch.observe(len(saves))
            operation = "add_event"
            for event in events:
                await self.store.add_event(event)
            operation = "publish"
            if publish:
                await self.store.publish(TOPIC_WORKERS)
        except FleetStoreError as exc:
            self.metrics.store_errors.labels(operation).inc()
            if not self.failing:
                log.warning("fleet store write failed (%s: %s); keeping the changes in memory and "
                            "retrying", operation, exc)
            self.failing = True
            return exc
        if self.failing:
            log.info("fleet store writes succeed again")
            self.failing = False
        return None

    def _requeue(self, saves: dict[str, tuple[WorkerRecord, bool]], deletes: set[str],
                 events: list[Event], publish: bool) -> None:
        # Deletions are idempotent and run before saves: re-queue them all. A save is re-queued
        # only if nothing newer replaced it and the worker was not deleted since.
        deleted_since = set(self._deletes)
        self._deletes |= deletes
        for worker_id, item in saves.items():
            if worker_id not in self._saves and worker_id not in deleted_since:
                self._saves[worker_id] = item
        self._events[:0] = events
        del self._events[: max(0, len(self._events) - MAX_QUEUED_EVENTS)]
        self._publish = self._publish or publish
        self._kick()

    async def aclose(self, task: asyncio.Task[None] | None, timeout: float = 5.0) -> None:
        """Write what is queued (bounded by `timeout`), then stop the task."""
        if task is not None:
            await self.drained(timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
