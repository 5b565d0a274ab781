"""API keys: looked up by SHA-256 in the fleet store, cached so requests do not wait on the store.

    Authorization: Bearer sk-flt-...  ──► sha256 ──► positive cache (TTL, default 30 s) ──► key
                                                 ├─► negative cache (unknown keys, TTL 5 s, LRU)
                                                 └─► store `keys` collection (one lookup per key
                                                     and TTL; concurrent misses share it)

A change notification on topic `keys` (a key created, changed or deleted) marks every cached entry
stale, so a revoked key stops working within one store round trip. A known key missing from a
store that has lost its data (no epoch) is kept: that is not a revocation. Stale positive entries
are still served while the store is unreachable: an outage of Redis must not log every client out
(the price: a key revoked during the outage keeps working until the store is back). A key that
cannot be verified at all (never seen, store down) gets 503, not 401: it may well be valid.
Strings that cannot be keys (wrong prefix or length) are refused without a lookup, so a flood of
garbage costs no store traffic; a flood of well-formed unknown keys costs one lookup per key per
negative TTL, at most `max_concurrent_lookups` at a time.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.catalog import ApiKeyRecord
from fleet.secrets import API_KEY_PREFIX, matches, sha256_hex
from fleet.store import KEYS, FleetStore, StoreUnavailable, from_doc
from router.errors import RequestRejected, RouterError, retry_after_headers

log = logging.getLogger("router.auth")

_MAX_KEY_LEN = 256
_MAX_POSITIVE = 100_000


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as far as the router needs to know it."""

    key_id: str
    name: str
    models: frozenset[str] | None
    rpm: int | None
    tpm: int | None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


def _principal(record: ApiKeyRecord) -> Principal:
    return Principal(key_id=record.id, name=record.name,
                     models=None if record.models is None else frozenset(record.models),
                     rpm=record.rpm, tpm=record.tpm)


def bearer_token(authorization: bytes | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    try:
        return token.decode("ascii") or None
    except UnicodeDecodeError:
        return None


def _unauthorized(message: str) -> RequestRejected:
    return RequestRejected(401, message, code="invalid_api_key")


class KeyCache:
    def __init__(self, store: FleetStore, *, ttl_s: float, negative_ttl_s: float,
                 negative_size: int, store_timeout_s: float,
                 store_ok: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic,
                 max_concurrent_lookups: int = 32) -> None:
        self._store = store
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._negative_size = negative_size
        self._timeout = store_timeout_s
        self._store_ok = store_ok
        self._clock = clock
        # key hash -> (principal, fresh until)
        self._positive: dict[str, tuple[Principal, float]] = {}
        # key hash -> remembered until; insertion order = age (LRU by insertion)
        self._negative: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._pending: dict[str, asyncio.Future[Principal | None]] = {}
        self._lookups = asyncio.Semaphore(max_concurrent_lookups)
        self.store_lookups = 0  # for tests and metrics: how often the store was asked

    async def authenticate(self, authorization: bytes | None) -> Principal:
        token = bearer_token(authorization)
        if token is None:
            raise _unauthorized("Missing API key: send `Authorization: Bearer <key>`.")
        if not token.startswith(API_KEY_PREFIX) or len(token) > _MAX_KEY_LEN:
            raise _unauthorized("Incorrect API key provided.")
        key_hash = sha256_hex(token)
        now = self._clock()
        cached = self._positive.get(key_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        remembered = self._negative.get(key_hash)
        if remembered is not None and remembered > now:
            raise _unauthorized("Incorrect API key provided.")
        if cached is not None and not self._store_ok():
            return cached[0]  # stale, but the store is down: keep the client working
        principal = await self._lookup(key_hash, token, cached)
        if principal is None:
            raise _unauthorized("Incorrect API key provided.")
        return principal

    def invalidate(self) -> None:
        """Keys changed in the store: re-check every key on its next use."""
        self._positive = {h: (p, 0.0) for h, (p, _) in self._positive.items()}
        self._negative.clear()

    async def _lookup(self, key_hash: str, token: str,
                      cached: tuple[Principal, float] | None) -> Principal | None:
        pending = self._pending.get(key_hash)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[key_hash] = pending
            try:
                result = await self._fetch(key_hash, token, cached)
            except RouterError as exc:
                if not pending.done():
                    pending.set_exception(exc)
                    pending.exception()  # retrieved: waiters may not exist
                if cached is not None:
                    return cached[0]
                raise
            else:
                if not pending.done():
                    pending.set_result(result)
                return result
            finally:
                self._pending.pop(key_hash, None)
        try:
            return await asyncio.shield(pending)
        except RouterError:
            if cached is not None:
                return cached[0]
            raise

    async def _fetch(self, key_hash: str, token: str,
                     cached: tuple[Principal, float] | None) -> Principal | None:
        async with self._lookups:
            self.store_lookups += 1
            try:
                async with asyncio.timeout(self._timeout):
                    doc = await self._store.get_doc(KEYS, key_hash)
                    if doc is None and cached is not None and \
                            await self._store.get_epoch() is None:
                        # A key we knew is gone because the store lost its data (no epoch),
                        # not because it was deleted: keep it until the store is re-seeded.
                        return cached[0]
            except (StoreUnavailable, TimeoutError) as exc:
                log.warning("cannot verify an API key, fleet store unavailable: %s", exc)
                raise RouterError(503, "Cannot verify the API key right now: the fleet store is "
                                  "unavailable.", code="store_unavailable",
                                  headers=retry_after_headers(1.0)) from exc
        now = self._clock()
        record = None
        if doc is not None:
            try:
                record = from_doc(ApiKeyRecord, doc)
            except TypeError:
                log.warning("ignoring malformed key record %s", doc.get("id"))
        if record is None or not matches(token, record.key_hash):
            self._positive.pop(key_hash, None)
            self._negative[key_hash] = now + self._negative_ttl
            self._negative.move_to_end(key_hash)
            while len(self._negative) > self._negative_size:
                self._negative.popitem(last=False)
            return None
        principal = _principal(record)
        if len(self._positive) >= _MAX_POSITIVE and key_hash not in self._positive:
            self._positive.clear()  # a crude bound; real deployments hold far fewer keys
        self._positive[key_hash] = (principal, now + self._ttl)
        return principal
