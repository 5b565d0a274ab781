"""The fleet store: shared state the control plane writes and routers read.

One protocol, two backends: `RedisFleetStore` (redis.asyncio; the deployment default) and
`MemoryFleetStore` (in-process; `flotilla up` without Redis). The contract test suite runs the same
tests against both. Key layout of the Redis backend: docs/store.md.

What lives here and who writes it:

    workers + ready sets per model   control plane only (`save_workers` writes both at once)
    documents (keys, routes, pools,  control plane (admin API); routers publish their own reports
      bursts, instances, tokens, ...)
    events                           control plane (timeline)
    counters with expiry             routers (rate-limit windows, usage)
    values with expiry               routers (cold-pool demand), response cache
    epoch                            control plane; its absence means the store lost its data
    change notifications             whoever changed something routers cache

Errors:

    FleetStoreError
     └── StoreUnavailable   the backend cannot be reached or timed out (callers keep their cache)
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fleet.schemas import Event, WorkerRecord

T = TypeVar("T")

# Collections of documents; a backend stores each as one hash/dict keyed by document id.
KEYS = "keys"  # api key hash -> ApiKeyRecord
ROUTES = "routes"  # model -> Route
POOLS = "pools"  # pool name -> Pool
BURSTS = "bursts"  # burst id -> burst record
INSTANCES = "instances"  # instance id -> what a capacity provider launched
WORKER_TOKENS = "worker_tokens"  # instance id -> {token_hash, issued_at}
ROUTERS = "routers"  # router replica id -> its latest report (in-flight counts, breakers)

# Topics of change notifications.
TOPIC_WORKERS = "workers"
TOPIC_KEYS = "keys"
TOPIC_ROUTES = "routes"
TOPIC_POOLS = "pools"


class FleetStoreError(Exception):
    """Root of the store's errors."""


class StoreUnavailable(FleetStoreError):
    """The backend could not be reached in time; the caller should keep what it has cached."""


@dataclass(frozen=True, slots=True)
class CountUpdate:
    """Add `deltas` to the counters under `key`; the key expires `ttl_s` after its last update."""

    key: str
    deltas: dict[str, int]
    ttl_s: float


def from_doc(cls: type[T], doc: dict[str, Any]) -> T:
    """Rebuild a stored dataclass, ignoring fields a newer writer may have added."""
    names = _field_names(cls)
    return cls(**{k: v for k, v in doc.items() if k in names})


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return names


class Subscription(Protocol):
    """Change notifications: iterate to receive topics; leaving the context unsubscribes."""

    def __aiter__(self) -> AsyncIterator[str]: ...


class FleetStore(Protocol):
    # lifecycle
    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...

    # epoch: set by the control plane; a missing epoch means the data was lost (flush, new Redis)
    async def get_epoch(self) -> str | None: ...
    async def ensure_epoch(self, candidate: str) -> tuple[str, bool]: ...

    # documents
    async def get_doc(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...
    async def get_docs(self, collection: str) -> dict[str, dict[str, Any]]: ...
    async def put_doc(self, collection: str, doc_id: str, doc: Any) -> None: ...
    async def put_doc_if_absent(self, collection: str, doc_id: str, doc: Any) -> bool: ...
    async def delete_doc(self, collection: str, doc_id: str) -> bool: ...

    # workers and the ready sets derived from them
    async def save_workers(self, items: Sequence[tuple[WorkerRecord, bool]]) -> None: ...
    async def delete_worker(self, worker_id: str) -> bool: ...
    async def get_worker(self, worker_id: str) -> WorkerRecord | None: ...
    async def list_workers(self) -> list[WorkerRecord]: ...
    async def ready_workers(self) -> dict[str, list[WorkerRecord]]: ...

    # the timeline
    async def add_event(self, event: Event) -> None: ...
    async def recent_events(self, limit: int = 200) -> list[Event]: ...

    # counters and values that expire
    async def add_counts(self, updates: Sequence[CountUpdate]) -> list[dict[str, int]]: ...
    async def get_counts(self, key: str) -> dict[str, int]: ...
    async def set_value(self, key: str, value: bytes, ttl_s: float) -> None: ...
    async def get_value(self, key: str) -> bytes | None: ...
    async def delete_value(self, key: str) -> bool: ...

    # bounded caches (the router's response cache): entries expire after their TTL, and past
    # `max_entries` in a space the least recently used are evicted; `cache_put` returns how many
    async def cache_put(self, space: str, key: str, value: bytes, ttl_s: float,
                        max_entries: int) -> int: ...
    async def cache_get(self, space: str, key: str) -> bytes | None: ...

    # change notifications
    async def publish(self, topic: str) -> None: ...
    def subscribe(self) -> AbstractAsyncContextManager[Subscription]: ...


async def save_worker(store: FleetStore, record: WorkerRecord, *, ready: bool) -> None:
    await store.save_workers([(record, ready)])


def open_store(redis_url: str | None, *, prefix: str = "flotilla") -> FleetStore:
    """Redis when a URL is given, else the embedded in-process store."""
    if redis_url:
        from fleet.redis_store import RedisFleetStore

        return RedisFleetStore(redis_url, prefix=prefix)
    from fleet.memory_store import MemoryFleetStore

    return MemoryFleetStore()
