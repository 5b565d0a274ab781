"""The Redis fleet store (redis.asyncio): the shared state of a multi-process deployment.

Every method is one round trip (pipelined where it touches several keys) except `ready_workers`
(three: models, ready sets, records) and `delete_worker` (read, then a transaction). Connection
errors and timeouts become `StoreUnavailable`; callers keep serving from what they cached. The key
layout is documented in docs/store.md.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fleet.schemas import Event, WorkerRecord
from fleet.store import CountUpdate, StoreUnavailable, from_doc

P = ParamSpec("P")
R = TypeVar("R")

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def _mapped(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc

    return wrapper


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class _RedisSubscription:
    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        try:
            async for message in self._pubsub.listen():
                if message.get("type") == "message":
                    yield _text(message["data"])
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis subscription lost: {exc}") from exc


class RedisFleetStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "flotilla",
        max_events: int = 10_000,
        timeout_s: float = 2.0,
        max_connections: int = 64,
    ) -> None:
        self._prefix = prefix
        self._max_events = max_events
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
            health_check_interval=15,
            max_connections=max_connections,
        )

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    @property
    def channel(self) -> str:
        return self._key("changes")

    # lifecycle -------------------------------------------------------------------------------
    @_mapped
    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()

    # epoch ------------------------------------------------------------------------------------
    @_mapped
    async def get_epoch(self) -> str | None:
        raw = await self._redis.get(self._key("epoch"))
        return None if raw is None else _text(raw)

    @_mapped
    async def ensure_epoch(self, candidate: str) -> tuple[str, bool]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("epoch"), candidate, nx=True)
            pipe.get(self._key("epoch"))
            created, current = await pipe.execute()
        return _text(current), bool(created)

    # documents --------------------------------------------------------------------------------
    @_mapped
    async def get_doc(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(self._key("doc", collection), doc_id)
        return None if raw is None else orjson.loads(raw)

    @_mapped
    async def get_docs(self, collection: str) -> dict[str, dict[str, Any]]:
        raw = await self._redis.hgetall(self._key("doc", collection))
        return {_text(k): orjson.loads(v) for k, v in raw.items()}

    @_mapped
    async def put_doc(self, collection: str, doc_id: str, doc: Any) -> None:
        await self._redis.hset(self._key("doc", collection), doc_id, orjson.dumps(doc))

    @_mapped
    async def put_doc_if_absent(self, collection: str, doc_id: str, doc: Any) -> bool:
        return bool(await self._redis.hsetnx(self._key("doc", collection), doc_id,
                                             orjson.dumps(doc)))

    @_mapped
    async def delete_doc(self, collection: str, doc_id: str) -> bool:
        return bool(await self._redis.hdel(self._key("doc", collection), doc_id))

    # workers ----------------------------------------------------------------------------------
    @_mapped
    async def save_workers(self, items: Sequence[tuple[WorkerRecord, bool]]) -> None:
        if not items:
            return
        workers = self._key("workers")
        async with self._redis.pipeline(transaction=True) as pipe:
            for record, ready in items:
                pipe.hset(workers, record.worker_id, orjson.dumps(record))
                pipe.sadd(self._key("models"), record.model_id)
                ready_set = self._key("ready", record.model_id)
                if ready:
                    pipe.sadd(ready_set, record.worker_id)
                else:
                    pipe.srem(ready_set, record.worker_id)
            await pipe.execute()

    @_mapped
    async def delete_worker(self, worker_id: str) -> bool:
        raw = await self._redis.hget(self._key("workers"), worker_id)
        if raw is None:
            return False
        model_id = orjson.loads(raw)["model_id"]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("workers"), worker_id)
            pipe.srem(self._key("ready", model_id), worker_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    @_mapped
    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        raw = await self._redis.hget(self._key("workers"), worker_id)
        return None if raw is None else from_doc(WorkerRecord, orjson.loads(raw))

    @_mapped
    async def list_workers(self) -> list[WorkerRecord]:
        raw = await self._redis.hgetall(self._key("workers"))
        return [from_doc(WorkerRecord, orjson.loads(v)) for v in raw.values()]

    @_mapped
    async def ready_workers(self) -> dict[str, list[WorkerRecord]]:
        models = sorted(_text(m) for m in await self._redis.smembers(self._key("models")))
        if not models:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for model_id in models:
                pipe.smembers(self._key("ready", model_id))
            memberships = await pipe.execute()
        by_model = {m: sorted(_text(w) for w in ids)
                    for m, ids in zip(models, memberships, strict=True) if ids}
        ids = [w for members in by_model.values() for w in members]
        if not ids:
            return {}
        raws = await self._redis.hmget(self._key("workers"), ids)
        records = {w: raw for w, raw in zip(ids, raws, strict=True) if raw is not None}
        out: dict[str, list[WorkerRecord]] = {}
        for model_id, members in by_model.items():
            found = [from_doc(WorkerRecord, orjson.loads(records[w]))
                     for w in members if w in records]
            if found:
                out[model_id] = found
        return out

    # events -----------------------------------------------------------------------------------
    @_mapped
    async def add_event(self, event: Event) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(self._key("events"), orjson.dumps(event))
            pipe.ltrim(self._key("events"), 0, self._max_events - 1)
            await pipe.execute()

    @_mapped
    async def recent_events(self, limit: int = 200) -> list[Event]:
        if limit <= 0:
            return []
        raws = await self._redis.lrange(self._key("events"), 0, limit - 1)
        return [from_doc(Event, orjson.loads(raw)) for raw in raws]

    # counters and values ----------------------------------------------------------------------
    @_mapped
    async def add_counts(self, updates: Sequence[CountUpdate]) -> list[dict[str, int]]:
        if not updates:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for update in updates:
                key = self._key("count", update.key)
                for name, delta in update.deltas.items():
                    pipe.hincrby(key, name, delta)
                pipe.pexpire(key, max(1, int(update.ttl_s * 1000)))
            results = await pipe.execute()
        totals: list[dict[str, int]] = []
        position = 0
        for update in updates:
            names = list(update.deltas)
            totals.append({n: int(v) for n, v in zip(names, results[position:], strict=False)})
            position += len(names) + 1
        return totals

    @_mapped
    async def get_counts(self, key: str) -> dict[str, int]:
        raw = await self._redis.hgetall(self._key("count", key))
        return {_text(k): int(v) for k, v in raw.items()}

    @_mapped
    async def set_value(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._redis.set(self._key("value", key), value, px=max(1, int(ttl_s * 1000)))

    @_mapped
    async def get_value(self, key: str) -> bytes | None:
        value = await self._redis.get(self._key("value", key))
        return value.encode() if isinstance(value, str) else value

    @_mapped
    async def delete_value(self, key: str) -> bool:
        return bool(await self._redis.delete(self._key("value", key)))

    # One round trip, atomic: store the entry, note its use in the space's index (a sorted set
    # by last use), drop index members whose entries have expired, evict the least recently used
    # beyond the bound. Entry keys are derived from the index members (fine for one Redis; a
    # cluster would need the space as a hash tag).
    _CACHE_PUT = """
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    redis.call('ZADD', KEYS[2], ARGV[3], ARGV[6])
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))
    local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
    local evicted = 0
    if over > 0 then
      local old = redis.call('ZPOPMIN', KEYS[2], over)
      for i = 1, #old, 2 do
        redis.call('DEL', ARGV[5] .. old[i])
        evicted = evicted + 1
      end
    end
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
    return evicted
    """

    @_mapped
    async def cache_put(self, space: str, key: str, value: bytes, ttl_s: float,
                        max_entries: int) -> int:
        ttl_ms = max(1, int(ttl_s * 1000))
        now_ms = int(time.time() * 1000)
        entry_prefix = self._key("cache", space, "")
        evicted = await self._redis.eval(
            self._CACHE_PUT, 2, entry_prefix + key, self._key("cacheidx", space),
            value, ttl_ms, now_ms, max(1, max_entries), entry_prefix, key)
        return int(evicted)

    @_mapped
    async def cache_get(self, space: str, key: str) -> bytes | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._key("cache", space, key))
            pipe.zadd(self._key("cacheidx", space), {key: int(time.time() * 1000)}, xx=True)
            value, _ = await pipe.execute()
        return value.encode() if isinstance(value, str) else value

    # notifications ----------------------------------------------------------------------------
    @_mapped
    async def publish(self, topic: str) -> None:
        await self._redis.publish(self.channel, topic)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[_RedisSubscription]:
        # Blocking reads on a subscription must not time out like ordinary commands do.
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            try:
                await pubsub.subscribe(self.channel)
            except _UNAVAILABLE as exc:
                raise StoreUnavailable(f"redis unavailable: {exc}") from exc
            yield _RedisSubscription(pubsub)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
