"""The embedded fleet store: everything in this process, for `flotilla up` without Redis.

Same contract as the Redis backend (the contract suite runs against both). Documents are kept as
encoded JSON so a caller can never mutate stored state by holding on to a returned object, exactly
as with Redis. Expiring entries are purged lazily on access and by a sweep on writes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson

from fleet.schemas import Event, WorkerRecord
from fleet.store import CountUpdate, from_doc

_SWEEP_EVERY = 1024  # writes between sweeps of expired entries


class _MemorySubscription:
    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self._queue = queue

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        while True:
            yield await self._queue.get()


class MemoryFleetStore:
    def __init__(self, *, max_events: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._epoch: str | None = None
        self._docs: dict[str, dict[str, bytes]] = collections.defaultdict(dict)
        self._workers: dict[str, bytes] = {}
        self._ready: dict[str, set[str]] = collections.defaultdict(set)
        self._events: collections.deque[bytes] = collections.deque(maxlen=max_events)
        self._counts: dict[str, tuple[float, dict[str, int]]] = {}
        self._values: dict[str, tuple[float, bytes]] = {}
        # space -> key -> (expires, value), least recently used first
        self._caches: dict[str, collections.OrderedDict[str, tuple[float, bytes]]] = {}
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._writes = 0

    # lifecycle -------------------------------------------------------------------------------
    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._subscribers.clear()

    def flush(self) -> None:
        """Forget everything, as a Redis FLUSHALL would (used by tests of recovery)."""
        self._epoch = None
        self._docs.clear()
        self._workers.clear()
        self._ready.clear()
        self._events.clear()
        self._counts.clear()
        self._values.clear()
        self._caches.clear()

    # epoch ------------------------------------------------------------------------------------
    async def get_epoch(self) -> str | None:
        return self._epoch

    async def ensure_epoch(self, candidate: str) -> tuple[str, bool]:
        if self._epoch is None:
            self._epoch = candidate
            return candidate, True
        return self._epoch, False

    # documents --------------------------------------------------------------------------------
    async def get_doc(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        raw = self._docs[collection].get(doc_id)
        return None if raw is None else orjson.loads(raw)

    async def get_docs(self, collection: str) -> dict[str, dict[str, Any]]:
        return {k: orjson.loads(v) for k, v in self._docs[collection].items()}

    async def put_doc(self, collection: str, doc_id: str, doc: Any) -> None:
        self._docs[collection][doc_id] = orjson.dumps(doc)

    async def put_doc_if_absent(self, collection: str, doc_id: str, doc: Any) -> bool:
        docs = self._docs[collection]
        if doc_id in docs:
            return False
        docs[doc_id] = orjson.dumps(doc)
        return True

    async def delete_doc(self, collection: str, doc_id: str) -> bool:
        return self._docs[collection].pop(doc_id, None) is not None

    # workers ----------------------------------------------------------------------------------
    async def save_workers(self, items: Sequence[tuple[WorkerRecord, bool]]) -> None:
        for record, ready in items:
            self._workers[record.worker_id] = orjson.dumps(record)
            members = self._ready[record.model_id]
            if ready:
                members.add(record.worker_id)
            else:
                members.discard(record.worker_id)

    async def delete_worker(self, worker_id: str) -> bool:
        raw = self._workers.pop(worker_id, None)
        if raw is None:
            return False
        model_id = orjson.loads(raw)["model_id"]
        self._ready[model_id].discard(worker_id)
        return True

    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        raw = self._workers.get(worker_id)
        return None if raw is None else from_doc(WorkerRecord, orjson.loads(raw))

    async def list_workers(self) -> list[WorkerRecord]:
        return [from_doc(WorkerRecord, orjson.loads(raw)) for raw in self._workers.values()]

    async def ready_workers(self) -> dict[str, list[WorkerRecord]]:
        out: dict[str, list[WorkerRecord]] = {}
        for model_id, members in self._ready.items():
            records = [from_doc(WorkerRecord, orjson.loads(self._workers[w]))
                       for w in sorted(members) if w in self._workers]
            if records:
                out[model_id] = records
        return out

    # events -----------------------------------------------------------------------------------
    async def add_event(self, event: Event) -> None:
        self._events.appendleft(orjson.dumps(event))

    async def recent_events(self, limit: int = 200) -> list[Event]:
        return [from_doc(Event, orjson.loads(raw))
                for raw in list(self._events)[: max(0, limit)]]

    # counters and values ----------------------------------------------------------------------
    def _tick(self) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = self._clock()
            for key in [k for k, (exp, _) in self._counts.items() if exp <= now]:
                del self._counts[key]
            for key in [k for k, (exp, _) in self._values.items() if exp <= now]:
                del self._values[key]

    async def add_counts(self, updates: Sequence[CountUpdate]) -> list[dict[str, int]]:
        now = self._clock()
        totals = []
        for update in updates:
            expires, counts = self._counts.get(update.key, (0.0, {}))
            if expires <= now:
                counts = {}
            counts = dict(counts)
            for name, delta in update.deltas.items():
                counts[name] = counts.get(name, 0) + delta
            self._counts[update.key] = (now + update.ttl_s, counts)
            totals.append({name: counts[name] for name in update.deltas})
            self._tick()
        return totals

    async def get_counts(self, key: str) -> dict[str, int]:
        expires, counts = self._counts.get(key, (0.0, {}))
        return dict(counts) if expires > self._clock() else {}

    async def set_value(self, key: str, value: bytes, ttl_s: float) -> None:
        self._values[key] = (self._clock() + ttl_s, bytes(value))
        self._tick()

    async def get_value(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    async def delete_value(self, key: str) -> bool:
        entry = self._values.pop(key, None)
        return entry is not None and entry[0] > self._clock()

    async def cache_put(self, space: str, key: str, value: bytes, ttl_s: float,
                        max_entries: int) -> int:
        entries = self._caches.setdefault(space, collections.OrderedDict())
        entries[key] = (self._clock() + ttl_s, bytes(value))
        entries.move_to_end(key)
        evicted = 0
        while len(entries) > max(1, max_entries):
            entries.popitem(last=False)
            evicted += 1
        return evicted

    async def cache_get(self, space: str, key: str) -> bytes | None:
        entries = self._caches.get(space)
        entry = None if entries is None else entries.get(key)
        if entry is None:
            return None
        assert entries is not None
        if entry[0] <= self._clock():
            del entries[key]
            return None
        entries.move_to_end(key)
        return entry[1]

    # notifications ----------------------------------------------------------------------------
    async def publish(self, topic: str) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                # A subscriber that fell behind loses the oldest topic, not the newest: readers
                # also refresh periodically, so only latency is lost, never the change itself.
                queue.get_nowait()
            queue.put_nowait(topic)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[_MemorySubscription]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=256)
        self._subscribers.add(queue)
        try:
            yield _MemorySubscription(queue)
        finally:
            self._subscribers.discard(queue)
